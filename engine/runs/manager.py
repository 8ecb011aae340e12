"""RunManager: creates, launches, stops, resumes, lists and deletes runs under one runs folder.

It reads and writes run folders only through engine.runs.protocol and starts processes through
engine.runs.process, so a second viewer (another app, the CLI) sees the same state and a run
outlives the process that launched it. No torch import at module level.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import paths
from engine.atomic import atomic_write_text
from engine.config import Hyperparameters, align_vocab, load_toml, resolve_paths, save_toml, validate
from engine.errors import DeviceError, RunError
from engine.estimate import fit_problem
from engine.metrics import parse_line
from engine.runs.process import child_env, pid_alive, signal_group, spawn_detached
from engine.runs.protocol import (
    CHECKPOINTS_DIR, COMMAND_FILE, CONFIG_FILE, LOG_FILE, METRICS_FILE, RUN_FILE, STATUS_FILE, STOP_REQUEST,
    TERMINAL_STATES, is_run_dir, joined, list_checkpoint_files, read_run_files, update_status, write_json,
)

ENTRY_MODULES = {"pretrain": "engine.pretraining", "finetune": "engine.finetune"}
# a run marked running whose process is gone ended without recording why (SIGKILL, OOM killer, reboot)
GONE_MESSAGE = "the training process is gone without recording an end state"


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    kind: str
    preset: str
    state: str
    step: int
    total_steps: int
    last_loss: float | None
    last_val_loss: float | None
    tokens_per_s: float | None
    started_at: float | None
    ended_at: float | None
    pid: int | None
    message: str
    nproc: int
    created_at: float = 0.0
    # the fraction done by whichever bound (steps or the time budget) ends the run; None before its first step
    progress: float | None = None
    time_budget_s: float = 0.0
    # notices about files of this run that could not be used ("status.json: step: expected ...")
    problems: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        """Progress as the bar shows it: the recorded fraction, else steps over total, 1 once finished."""
        if self.state == "finished":
            return 1.0
        if self.progress is not None:
            return min(1.0, self.progress)
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def ended_by_time(self) -> bool:
        """Finished on its time budget before its step count."""
        return self.state == "finished" and bool(self.time_budget_s) and self.step < self.total_steps

    @property
    def steps_label(self) -> str:
        """"212/1000", or "212 (time budget)" when the budget ended the run first: the bound that ended it shows."""
        if self.ended_by_time:
            return f"{self.step} (time budget)"
        return f"{self.step}/{self.total_steps}" if self.total_steps else str(self.step)


def _tail_events(path: Path, max_bytes: int = 65536) -> list[dict[str, Any]]:
    """Events in the last max_bytes of metrics.jsonl: enough for the latest loss without reading it all."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            chunk = handle.read()
    except OSError:
        return []
    lines = chunk.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]  # the first line is probably cut
    return [e for e in (parse_line(raw.decode("utf-8", "replace")) for raw in lines) if e is not None]


def available_devices(device: str) -> tuple[str, int]:
    """(kind, count) of devices a run on `device` could use; imports torch only for GPUs."""
    if device == "cpu":
        return "cpu", os.cpu_count() or 1
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda", torch.cuda.device_count()
    if device == "cuda":
        raise DeviceError("run.device is 'cuda' but no CUDA GPU is available", hint="use run.device=cpu or auto")
    return "cpu", os.cpu_count() or 1


class RunManager:
    """Creates, launches, stops, resumes, lists and deletes runs under one root folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.runs_dir()

    # ------------------------------------------------------------------ paths and reading
    def run_dir(self, name: str) -> Path:
        return self.root / paths.validate_name(name)

    def _info(self, run_dir: Path) -> RunInfo:
        files = read_run_files(run_dir)
        meta, status = files.meta, files.status
        events = _tail_events(run_dir / METRICS_FILE)
        last_train = next((e for e in reversed(events) if e["kind"] == "train"), None)
        last_val = next((e for e in reversed(events) if e["kind"] == "val"), None)
        state, message = status.state, status.message
        if state == "running" and (status.pid is None or not pid_alive(status.pid, status.pid_started_at)):
            state, message = "failed", GONE_MESSAGE
        steps = [e["step"] for e in (last_train, last_val) if e and isinstance(e.get("step"), int)] + [status.step]
        # the trainer records the fraction of whichever bound ends the run with each step and in its status
        fractions = [v for v in (_number(last_train, "progress"), status.progress) if v is not None]
        return RunInfo(
            name=run_dir.name,
            path=run_dir,
            kind=meta.kind,
            preset=meta.preset,
            state=state,
            step=max(steps),
            total_steps=status.total_steps or meta.total_steps,
            last_loss=_number(last_train, "loss"),
            last_val_loss=_number(last_val, "val_loss"),
            tokens_per_s=_number(last_train, "tokens_per_s"),
            started_at=status.started_at,
            ended_at=status.ended_at,
            pid=status.pid,
            message=message,
            nproc=meta.nproc,
            created_at=meta.created_at,
            progress=max(fractions) if fractions else None,
            time_budget_s=status.time_budget_s,
            problems=tuple(str(p) for p in files.problems),
        )

    def list_runs(self) -> list[RunInfo]:
        if not self.root.is_dir():
            return []
        runs = [self._info(d) for d in self.root.iterdir() if is_run_dir(d)]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def get(self, name: str) -> RunInfo:
        run_dir = self.run_dir(name)
        if not is_run_dir(run_dir):
            raise RunError(f"no run named {name!r} in {self.root}", hint="list runs with: nanogpt-tui runs")
        return self._info(run_dir)

    def config(self, name: str) -> Hyperparameters:
        return load_toml(self.run_dir(name) / CONFIG_FILE)

    # ------------------------------------------------------------------ creating and launching
    def _fresh_name(self, hp: Hyperparameters) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{hp.preset}-{stamp}"
        name, n = base, 1
        while (self.root / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def create(self, hp: Hyperparameters, name: str | None = None, *, kind: str = "pretrain", nproc: int = 1,
               nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None,
               parent: str | None = None) -> RunInfo:
        if kind not in ENTRY_MODULES:
            raise RunError(f"unknown run kind {kind!r}")
        if nproc < 1 or nnodes < 1:
            raise DeviceError("--nproc and --nnodes must be at least 1")
        if nnodes > 1 and not rdzv_endpoint:
            raise RunError("a multi-node run needs a rendezvous endpoint", hint="pass --rdzv-endpoint HOST:PORT (the first node)")
        hp = resolve_paths(align_vocab(hp), Path.cwd())
        validate(hp)
        device_kind, count = available_devices(hp.run.device)
        if nproc > count:
            raise DeviceError(
                f"--nproc {nproc} is more than the {count} {device_kind.upper()} device(s) available here",
                hint=f"use --nproc {count} or fewer",
            )
        too_big = fit_problem(hp, nproc, device_kind)
        if too_big is not None:
            raise DeviceError(too_big, hint="make the model smaller (model.num_layers, model.model_dim) or lower "
                              "train.micro_batch_size; `nanogpt-tui estimate` shows the sizes")
        name = paths.validate_name(name) if name else self._fresh_name(hp)
        run_dir = self.root / name
        paths.make_dir(self.root, "runs folder")
        try:
            run_dir.mkdir()  # fails if it exists: two launches with one name cannot both win
        except FileExistsError:
            raise RunError(f"a run named {name!r} already exists", hint="choose another --name or resume it") from None
        save_toml(hp, run_dir / CONFIG_FILE)
        write_json(run_dir / RUN_FILE, {
            "name": name, "kind": kind, "preset": hp.preset, "created_at": time.time(),
            "nproc": nproc, "nnodes": nnodes, "node_rank": node_rank, "rdzv_endpoint": rdzv_endpoint,
            "parent": parent, "total_steps": hp.train.num_iterations, "device": device_kind,
        })
        write_json(run_dir / STATUS_FILE, {"state": "created", "step": 0, "total_steps": hp.train.num_iterations,
                                           "time_budget_s": hp.train.time_budget_s})
        return self._info(run_dir)

    def torchrun_command(self, name: str, *, node_rank: int | None = None, resume: bool = False,
                         python: str | None = None) -> list[str]:
        """The training command; one process runs plain `python -m`, more go through torchrun."""
        run_dir = self.run_dir(name)
        meta = read_run_files(run_dir).meta
        if meta.kind not in ENTRY_MODULES:
            raise RunError(f"run {name!r} holds an imported checkpoint ({meta.kind}) and cannot be trained",
                           hint="fine-tune from its checkpoint instead")
        python = python or sys.executable
        tail = ["-m", ENTRY_MODULES[meta.kind], "--run-dir", str(run_dir.resolve())] + (["--resume"] if resume else [])
        nproc, nnodes = meta.nproc, meta.nnodes
        if nproc == 1 and nnodes == 1:
            return [python, *tail]
        launcher = [python, "-m", "torch.distributed.run"]
        if nnodes == 1:
            launcher += ["--standalone", f"--nproc-per-node={nproc}"]
        else:
            if not meta.rdzv_endpoint:
                raise RunError(f"run {name!r} is a multi-node run without a rendezvous endpoint in {RUN_FILE}")
            rank = meta.node_rank if node_rank is None else node_rank
            launcher += [f"--nnodes={nnodes}", f"--node-rank={rank}", f"--nproc-per-node={nproc}",
                         "--rdzv-backend=c10d", f"--rdzv-endpoint={meta.rdzv_endpoint}",
                         f"--rdzv-id={name}"]
        return launcher + tail

    def launch(self, name: str, *, resume: bool = False) -> RunInfo:
        """Start the run detached (own session), output appended to train.log."""
        info = self.get(name)
        if info.kind not in ENTRY_MODULES:
            raise RunError(f"run {name!r} holds an imported checkpoint ({info.kind}) and cannot be trained",
                           hint="fine-tune from its checkpoint instead")
        if info.state == "running":
            raise RunError(f"run {name!r} is already running (pid {info.pid})")
        run_dir = info.path
        (run_dir / STOP_REQUEST).unlink(missing_ok=True)
        command = self.torchrun_command(name, resume=resume)
        meta = read_run_files(run_dir).meta
        extra = {}
        if meta.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # torchrun would pin each worker to one thread; share the cores out instead
            extra["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // meta.nproc))
        write_json(run_dir / COMMAND_FILE, {"command": command})
        # the supervisor leads the process group; it ignores stop signals and leaves them to the trainer
        started = spawn_detached([sys.executable, "-m", "engine.launcher", "--run-dir", str(run_dir.resolve())],
                                 cwd=run_dir, log_path=run_dir / LOG_FILE, env=child_env(extra))
        update_status(run_dir, state="running", pid=started.pid, pid_started_at=started.started_at,
                      started_at=time.time(), ended_at=None, exit_code=None,
                      message="resuming" if resume else "starting")
        return self._info(run_dir)

    def create_and_launch(self, hp: Hyperparameters, name: str | None = None, **kwargs: Any) -> RunInfo:
        info = self.create(hp, name, **kwargs)
        return self.launch(info.name)

    def resume(self, name: str, *, kind: str | None = None, rerun_finished: bool = False) -> RunInfo:
        """Continue a run from its newest checkpoint. `kind` (pretrain/finetune) refuses a run of the other
        kind; a finished run is trained again only with rerun_finished (it would replace its final checkpoint)."""
        info = self.get(name)
        if info.state == "running":
            raise RunError(f"run {name!r} is still running", hint="stop it first")
        if kind is not None and info.kind != kind:
            command = "finetune" if info.kind == "finetune" else "train"
            raise RunError(f"run {name!r} is a {info.kind} run, not a {kind} run: nothing was started",
                           hint=f"resume it as what it is: nanogpt-tui {command} --resume {name}")
        if info.state == "finished" and not rerun_finished:
            raise RunError(f"run {name!r} already finished (step {info.step}/{info.total_steps}): resuming it would "
                           "train its last steps again, replace its final checkpoint and add to its metrics",
                           hint="to do that anyway pass --rerun; to train further, start a new run")
        checkpoints, problems = list_checkpoint_files(info.path / CHECKPOINTS_DIR)
        if not checkpoints:
            # resuming without one would only mark the run failed; say why there is none
            why = joined(problems, CHECKPOINTS_DIR) or "none was written yet"
            raise RunError(f"run {name!r} has no complete checkpoint to resume from: {why}",
                           hint="fix or remove that file, or start a new run" if problems else "start a new run")
        return self.launch(name, resume=True)

    def stop(self, name: str) -> None:
        """Ask the run to save a checkpoint and stop: mark the request, SIGTERM the process group."""
        info = self.get(name)
        if info.state != "running" or info.pid is None:
            raise RunError(f"run {name!r} is not running (state: {info.state})")
        atomic_write_text(info.path / STOP_REQUEST, str(time.time()))
        signal_group(info.pid)

    def delete(self, name: str) -> None:
        info = self.get(name)
        if info.state == "running":
            raise RunError(f"run {name!r} is running", hint="stop it before deleting it")
        shutil.rmtree(info.path)

    def wait(self, name: str, timeout: float = 600.0, poll: float = 0.2) -> RunInfo:
        """Block until the run reaches an end state (used by tests and the attached CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.get(name)
            if info.state in TERMINAL_STATES:
                return info
            if time.monotonic() > deadline:
                raise RunError(f"run {name!r} did not finish within {timeout:.0f} s")
            time.sleep(poll)


def _number(event: dict[str, Any] | None, key: str) -> float | None:
    value = event.get(key) if event else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
