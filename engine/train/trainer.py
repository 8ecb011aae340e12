"""The training loop shared by pretraining and fine-tuning: schedule, accumulation, reporting, stop.

A task object (`engine/train/task.py`) provides the model, optimisers, batches, window, validation
and samples; the Trainer owns the optimiser steps, metrics.jsonl, status.json, checkpoints,
SIGTERM handling and exact resume. `engine/train/entry.py` runs one and turns failures into a status.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.checkpoint import latest_checkpoint, load_state_into, read_checkpoint_file, save_checkpoint
from engine.config import Hyperparameters, config_hash, to_dict
from engine.errors import CheckpointError, EngineError
from engine.metrics import MetricsWriter
from engine.runs.protocol import STOP_REQUEST, update_status
from engine.train.allocator import retain_freed_memory
from engine.train.device import (choose_fast_paths, compile_for_training, detect_capabilities, prepare_model_for_device,
                                 window_argument)
from engine.train.distributed import DistContext, agree, all_reduce_mean_
from engine.train.environment import environment_record, write_environment
from engine.train.stopping import StopSignal
from engine.train.task import TrainingTask

log = logging.getLogger(__name__)

# the host waits for the device (to write the buffered train lines) at most this often, so
# steps queue up on a GPU instead of stopping after each for a loss value
LOG_FLUSH_S = 1.0


class Trainer:
    """One training run in a run directory, of the task given (pretraining or fine-tuning)."""

    def __init__(self, hp: Hyperparameters, run_dir: Path, ctx: DistContext, task: TrainingTask, *,
                 stop: StopSignal, resume: bool) -> None:
        self.hp, self.run_dir, self.ctx, self.task = hp, run_dir, ctx, task
        self.stop, self.kind, self.parent = stop, task.kind, task.parent
        self.tokenizer = task.tokenizer
        self.device = ctx.device
        if self.device.type == "cpu":
            # CPU steps re-allocate MiB-sized activations; keeping freed memory avoids ~20 % in page faults
            retain_freed_memory()
        self.step = 0
        self.tokens_seen = 0
        self.train_time_s = 0.0
        # with several ranks, the training time the schedule and the stop by time go by (the same on every rank)
        self.schedule_time_s = 0.0
        self.last_val: dict[str, float] = {}
        self.metrics = MetricsWriter(run_dir / "metrics.jsonl") if ctx.is_main else None
        stop.timeout_s = hp.run.stop_timeout_s
        stop.on_timeout = self.record_stop_timeout
        if ctx.is_main:
            remove_partial_files(run_dir / "checkpoints")
        self.device_caps = detect_capabilities(self.device)
        self.fast_paths = choose_fast_paths(self.device_caps, hp.run)
        # every task's model gets the device's fast paths; the steps call the (maybe compiled) step_model
        self.model = prepare_model_for_device(task.build_model(hp, self.device), self.fast_paths)
        self.step_model = compile_for_training(self.model, self.fast_paths)
        self.compile_s: float | None = None
        self.validating = False  # for the out-of-memory hint: validation runs at train.val_seq_len
        # train lines whose loss still lives on the device: (step, loss, lr multiplier, tokens seen)
        self._pending_lines: list[tuple[int, Tensor, float, int]] = []
        self._nonfinite: Tensor | None = None  # device flag: some step's loss was NaN or inf
        self._interval_start, self._interval_steps, self._interval_base = 0.0, 0, 0.0
        self.optimizers = task.build_optimizers(self.model, hp, ctx)
        self.batches = task.build_batches(hp, ctx)
        if resume:
            self.restore()

    # ------------------------------------------------------------------ the task's parts
    @property
    def accumulation(self) -> int:
        t = self.hp.train
        per_step = self.ctx.world_size * t.micro_batch_size
        if t.batch_size % per_step:
            raise EngineError(
                f"train.batch_size {t.batch_size} is not a multiple of ranks x micro_batch_size ({per_step})",
                hint=f"use a batch_size that {self.ctx.world_size} process(es) x {t.micro_batch_size} divides",
            )
        return t.batch_size // per_step

    def validate(self, window_blocks: int) -> dict[str, float]:
        window = window_argument(window_blocks, self.fast_paths, self.device)
        return self.task.validate(self.step_model, self.hp, self.ctx, window, self.device)

    def sample(self) -> str:
        return self.task.sample(self.model, self.hp, self.device)

    # ------------------------------------------------------------------ schedule
    def progress(self, step: int | None = None) -> float:
        """The fraction done by whichever bound ends the run (steps or the time budget), at `step` (default: now)."""
        t = self.hp.train
        by_steps = (self.step if step is None else step) / t.num_iterations
        # several ranks go by the time they agreed on before this step; one process by its own
        seconds = self.schedule_time_s if self.ctx.distributed else self.train_time_s
        by_time = seconds / t.time_budget_s if t.time_budget_s > 0 else 0.0
        return min(1.0, max(by_steps, by_time))

    def apply_schedule(self) -> float:
        from engine.train.muon import Muon
        from engine.train.schedules import lr_multiplier, muon_momentum

        multiplier = lr_multiplier(self.progress(), self.hp.train.cooldown_frac, self.hp.train.final_lr_frac)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * multiplier
            if isinstance(opt, Muon):
                momentum = muon_momentum(self.step, self.hp.optim.muon_momentum)
                for group in opt.param_groups:
                    group["momentum"] = momentum
        return multiplier

    def window_blocks(self) -> int:
        return self.task.window_blocks(self.hp, self.progress())

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "config": to_dict(self.hp),
            "tokenizer": self.tokenizer.to_payload(),
            "data_position": self.batches.state_dict(),
            "tokens_seen": self.tokens_seen,
            "train_time_s": self.train_time_s,
            "kind": self.kind,
            "parent": self.parent,
        }

    def save(self) -> Path | None:
        from engine.train.muon import Muon

        # every rank takes part: each holds the Muon momentum of its own shard only
        for opt in self.optimizers:
            if isinstance(opt, Muon):
                opt.consolidate_state()
        if not self.ctx.is_main:
            return None
        meta = {
            "tokens_seen": self.tokens_seen, "config_hash": config_hash(self.hp),
            "tokenizer": self.tokenizer.to_payload()["kind"], "run": self.run_dir.name, "kind": self.kind,
            "parent": self.parent, "num_params": sum(p.numel() for p in self.model.parameters()),
            "model": to_dict(self.hp)["model"], "preset": self.hp.preset, **self.last_val,
        }
        try:
            path = save_checkpoint(self.run_dir / "checkpoints", self.step, self.checkpoint_payload(), meta)
        except CheckpointError as err:
            # keep training: the previous checkpoint is intact, and the user sees why in the log
            log.error("error: %s\nhint: %s", err.message, err.hint)
            self.metrics.write("status", self.step, state="running", message=f"checkpoint failed: {err.message}")
            return None
        self.metrics.write("checkpoint", self.step, path=str(path.relative_to(self.run_dir)))
        return path

    def restore(self) -> None:
        info = latest_checkpoint(self.run_dir / "checkpoints")
        if info is None:
            raise CheckpointError(f"run {self.run_dir.name} has no checkpoint to resume from",
                                  hint="start it again instead of resuming")
        data = read_checkpoint_file(info.path, map_location=str(self.device))
        if data.get("config", {}).get("model") != to_dict(self.hp)["model"]:
            raise CheckpointError(
                f"the model in {info.path.name} has another shape than the run's config.toml",
                hint="resume with the config the run was started with, or start a new run",
            )
        # the data position means something else under the other sampling; checkpoints from
        # before the key existed were all sequential
        sampling = data.get("config", {}).get("data", {}).get("sampling", "sequential")
        if sampling != self.hp.data.sampling:
            raise CheckpointError(
                f"{info.path.name} was written by {sampling} sampling, but the run's config.toml says "
                f"data.sampling = {self.hp.data.sampling!r}",
                hint="resume with the data.sampling the run was started with",
            )
        load_state_into(self.model, data["model"], str(info.path))
        load_optimizer_states(self.optimizers, data, info.path.name)
        self.batches.load_state_dict(data["data_position"])
        self.step, self.tokens_seen = int(data["step"]), int(data["tokens_seen"])
        self.train_time_s = self.schedule_time_s = float(data.get("train_time_s", 0.0))
        log.info("resumed from %s at step %d", info.path.name, self.step)

    def stop_file_present(self) -> bool:
        """The stop marker RunManager writes; covers a signal lost while this process started."""
        return self.ctx.is_main and (self.run_dir / STOP_REQUEST).exists()

    def record_stop_timeout(self) -> None:
        if self.ctx.is_main:
            self.end("stopped", f"stop took longer than {self.hp.run.stop_timeout_s:.0f} s; "
                     "the newest complete checkpoint is kept")

    # ------------------------------------------------------------------ the loop
    def report(self, kind: str, **fields: Any) -> None:
        if self.metrics is not None:
            self.metrics.write(kind, self.step, **fields)

    def set_status(self, **fields: Any) -> None:
        if self.ctx.is_main:
            # progress follows whichever bound (steps or the time budget) ends the run, so viewers can too
            update_status(self.run_dir, step=self.step, total_steps=self.hp.train.num_iterations,
                          progress=round(self.progress(), 4), time_budget_s=self.hp.train.time_budget_s,
                          train_time_s=round(self.train_time_s, 3), **fields)

    def finished(self) -> bool:
        return self.step >= self.hp.train.num_iterations or self.progress() >= 1.0

    def train_step(self) -> Tensor:
        """One optimiser step; returns the mean micro-batch loss as a 0-d tensor on the device (no host sync)."""
        accumulation = self.accumulation
        window = window_argument(self.window_blocks(), self.fast_paths, self.device)
        total = torch.zeros((), device=self.device)
        for _ in range(accumulation):
            inputs, targets, mask = self.batches.next_batch(self.device)
            loss = self.step_model(inputs, targets, window, loss_mask=mask)
            (loss / accumulation).backward()
            total += loss.detach()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        all_reduce_mean_(grads, self.ctx.world_size)
        multiplier = self.apply_schedule()
        for opt in self.optimizers:
            opt.step()
        self.model.zero_grad(set_to_none=True)
        self.last_multiplier = multiplier
        return total / accumulation

    def step_avg_ms(self) -> float:
        """Mean step time so far, leaving out this process's compiling first step."""
        timed_steps = self.step - (1 if self.compile_s is not None else 0)
        return self.train_time_s * 1000 / max(timed_steps, 1)

    def periodic(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def run(self) -> str:
        """Train until done or stopped; returns the end state."""
        hp, r = self.hp, self.hp.run
        self.set_status(state="running", message="training")
        self.report("status", state="running", message=f"{self.kind} on {self.device}, {self.ctx.world_size} process(es)")
        if self.ctx.is_main:
            write_environment(self.run_dir, environment_record(self.device_caps, self.fast_paths, self.ctx.world_size))
            log.info("fast paths: %s", "; ".join(self.fast_paths.reasons))
        tokens_per_step = hp.train.batch_size * hp.train.train_seq_len
        if self.step == 0 and r.val_every:
            self.run_validation()
        self._open_interval()
        while not self.finished():
            stop, self.schedule_time_s = agree(self.stop.requested or self.stop_file_present(), self.train_time_s,
                                               self.ctx)
            if stop:
                self.flush()
                self.save()  # no validation here: a stop must be quick
                self.end("stopped", f"stopped at step {self.step}")
                return "stopped"
            compiling = self.fast_paths.compile and self.compile_s is None
            start = time.perf_counter()
            loss = self.train_step()
            self._nonfinite = ~torch.isfinite(loss) if self._nonfinite is None else self._nonfinite | ~torch.isfinite(loss)
            # host time: the device may still be working; each flush replaces it by the waited-for time
            self.train_time_s += time.perf_counter() - start
            self.step += 1
            self._interval_steps += 1
            self.tokens_seen += tokens_per_step
            if self.periodic(r.log_every) or self.step == 1 or self.finished():
                self._pending_lines.append((self.step, loss, self.last_multiplier, self.tokens_seen))
            busy = any(self.periodic(every) for every in (r.val_every, r.sample_every, r.checkpoint_every))
            if compiling or self.step == 1 or self.finished() or busy or \
                    time.perf_counter() - self._interval_start >= LOG_FLUSH_S:
                self.flush(compiled=compiling)
            if self.finished():
                break
            if self.periodic(r.val_every):
                self.run_validation()
            if self.periodic(r.sample_every):
                self.run_sample()
            if self.periodic(r.checkpoint_every):
                self.save()
            if busy:
                self._open_interval()  # validation, samples and checkpoints are not training time
        self.flush()
        self.run_validation()
        self.run_sample()
        saved = self.save()
        message = f"finished {self.step} steps"
        if saved is None and self.ctx.is_main:
            message += ", but the final checkpoint could not be written (see train.log)"
        self.end("finished", message)
        return "finished"

    def _open_interval(self) -> None:
        self._interval_start, self._interval_steps, self._interval_base = time.perf_counter(), 0, self.train_time_s

    def flush(self, compiled: bool = False) -> None:
        """Wait for the device, fix the training time, check the losses and write the buffered train lines.

        `compiled`: the interval is this process's first, compiling step, reported apart as compile_s.
        """
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        wall, steps = now - self._interval_start, self._interval_steps
        if compiled:
            self.compile_s = wall
            self.train_time_s = self._interval_base
            self.report("status", state="running", message=f"compiled the model in {wall:.1f} s",
                        compile_s=round(wall, 2))
        elif steps:
            self.train_time_s = self._interval_base + wall
        lines, self._pending_lines = self._pending_lines, []
        if self._nonfinite is None and not lines:
            self._open_interval()
            return
        flag = self._nonfinite if self._nonfinite is not None else torch.zeros((), dtype=torch.bool, device=self.device)
        # the buffered losses and the non-finite flag in one transfer: one wait for the device
        *losses, nonfinite = torch.stack([*(loss.float() for _, loss, _, _ in lines), flag.float()]).tolist()
        if nonfinite:
            bad = next((f"{value} at step {step}" for (step, *_), value in zip(lines, losses) if not math.isfinite(value)),
                       f"non-finite at a step up to {self.step}")
            raise EngineError(f"the training loss became {bad}",
                              hint="lower the learning rates (optim.*) or check the data")
        step_s = wall / max(steps, 1)  # the interval's mean: single steps are not waited for
        tokens_per_step = self.hp.train.batch_size * self.hp.train.train_seq_len
        for (step, _, multiplier, tokens), value in zip(lines, losses):
            self.metrics_line(step, value, multiplier, tokens, tokens_per_step / step_s, step_s)
        self._open_interval()

    def metrics_line(self, step: int, loss: float, multiplier: float, tokens: int, tokens_per_s: float,
                     step_s: float) -> None:
        if self.metrics is not None:
            self.metrics.write("train", step, loss=round(loss, 5), lr=round(multiplier, 5), tokens=tokens,
                               tokens_per_s=round(tokens_per_s, 1), step_time_ms=round(step_s * 1000, 2),
                               progress=round(self.progress(step), 4))
        if self.ctx.is_main:
            print(f"step:{step}/{self.hp.train.num_iterations} train_loss:{loss:.4f} "
                  f"train_time:{self.train_time_s * 1000:.0f}ms step_avg:{self.step_avg_ms():.2f}ms", flush=True)

    def run_validation(self) -> None:
        self.validating = True
        self.last_val = self.validate(self.window_blocks())
        self.validating = False
        self.report("val", tokens=self.tokens_seen, **{k: round(v, 5) for k, v in self.last_val.items()})
        if self.ctx.is_main:
            print(f"step:{self.step}/{self.hp.train.num_iterations} val_loss:{self.last_val['val_loss']:.4f} "
                  f"val_bpb:{self.last_val.get('val_bpb', float('nan')):.4f} train_time:{self.train_time_s * 1000:.0f}ms "
                  f"step_avg:{self.step_avg_ms():.2f}ms", flush=True)
            self.set_status(state="running", message="training")

    def run_sample(self) -> None:
        if self.ctx.is_main and self.hp.run.sample_tokens:
            self.report("sample", text=self.sample())

    def end(self, state: str, message: str) -> None:
        self.report("status", state=state, message=message)
        self.set_status(state=state, message=message, ended_at=time.time())
        if self.metrics is not None:
            self.metrics.sync()
            self.metrics.close()


def remove_partial_files(directory: Path) -> None:
    """Delete temp files left by a save that was killed; they are never read, only clutter."""
    if directory.is_dir():
        for leftover in directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def load_optimizer_states(optimizers: list[Any], data: dict[str, Any], name: str) -> None:
    """The checkpoint's optimiser states into `optimizers`; CheckpointError when it holds other ones (or none)."""
    states = data.get("optimizers")
    if not isinstance(states, list) or len(states) != len(optimizers):
        # weights only (an imported or hand-made file): resuming needs the optimisers' moments too
        count = len(states) if isinstance(states, list) else 0
        raise CheckpointError(f"{name} holds {count} optimiser state(s), the run has {len(optimizers)}: "
                              "it cannot be resumed from", hint="fine-tune from it, or start a new run")
    for optimizer, state in zip(optimizers, states, strict=True):
        optimizer.load_state_dict(state)
