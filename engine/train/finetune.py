"""Fine-tuning: `python -m engine.finetune --run-dir D` (that module is the entry point) or under torchrun.

Starts from the parent checkpoint named in the run's `[finetune]` config (ours, or an original
modded-nanogpt `state_step*.pt`), trains on conversations with the loss on assistant tokens only,
and writes the same run-directory files as pretraining. SIGTERM saves a checkpoint; --resume
continues from the newest one without needing the parent again.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.config import Hyperparameters, ModelConfig, apply_overrides, from_dict, load_toml, next_multiple_of_n, preset
from engine.data.conversation_rows import ConversationDataset
from engine.data.conversations import ConversationReport, first_few
from engine.errors import CheckpointError, ConfigError
from engine.train.device import host_to_device
from engine.train.entry import run_entry_point
from engine.train.stopping import StopSignal
from engine.train.task import TrainingTask
from engine.train.trainer import Trainer

log = logging.getLogger(__name__)

# rows of at most this many tokens: conversations are short, and the original fine-tuned on 512
MAX_FINETUNE_SEQ_LEN = 512
FINETUNE_BATCH_SIZE = 8


@dataclass(frozen=True)
class Parent:
    """The checkpoint a fine-tune starts from: its weights, model shape, tokenizer and config."""

    path: Path
    model: ModelConfig
    tokenizer: dict[str, str]  # Tokenizer.to_payload()
    state_dict: dict[str, Tensor]
    hp: Hyperparameters | None  # None for an original modded-nanogpt checkpoint (no config inside)


def read_parent(spec: str | Path) -> Parent:
    """Load a parent checkpoint: ours (config and tokenizer inside) or an original state_step*.pt (GPT-2)."""
    from engine.checkpoint import read_checkpoint_file, strip_prefix
    from engine.importer import ORIGINAL, OURS, detect_format, infer_model_config

    path = Path(spec).expanduser()
    data = read_checkpoint_file(path)
    kind = detect_format(data, str(path))
    if kind not in (OURS, ORIGINAL):
        raise CheckpointError(f"{path} is an original finetune.py output, which holds pickled objects",
                              hint=f"import it first (nanogpt-tui import {path} --trust-pickle), then fine-tune the run")
    state_dict = strip_prefix(data["model"])
    if kind == OURS:
        try:
            hp = from_dict(data["config"], source=f"{path} (config)")
        except ConfigError as err:
            raise CheckpointError(f"{path} has an invalid config: {err.message}", hint=err.hint) from err
        return Parent(path, hp.model, data.get("tokenizer") or {"kind": "gpt2"}, state_dict, hp)
    config, _notes = infer_model_config(state_dict, str(path))
    return Parent(path, config, {"kind": "gpt2"}, state_dict, None)


def finetune_hyperparameters(parent: Parent, data: str, overrides: list[str]) -> Hyperparameters:
    """The parent's config with fine-tuning's batch shape and [finetune] filled in, then --set overrides.

    Rows are at most MAX_FINETUNE_SEQ_LEN tokens and a micro-batch never holds more tokens than the
    parent's did, so what fitted in memory for pretraining fits here. Steps follow finetune.epochs.
    """
    base = parent.hp or dataclasses.replace(preset("speedrun-124m"), model=parent.model)
    t, m = base.train, base.model
    seq_len = min(t.train_seq_len, next_multiple_of_n(MAX_FINETUNE_SEQ_LEN, n=m.attn_block_size))
    micro = max(1, min(FINETUNE_BATCH_SIZE, t.micro_batch_size * t.train_seq_len // seq_len))
    while FINETUNE_BATCH_SIZE % micro:
        micro -= 1
    hp = dataclasses.replace(
        base,
        train=dataclasses.replace(t, train_seq_len=seq_len, val_seq_len=seq_len, batch_size=FINETUNE_BATCH_SIZE,
                                  micro_batch_size=micro, time_budget_s=0.0),
        run=dataclasses.replace(base.run, checkpoint_every=0, sample_every=0),
        # absolute: the run's processes start in the run directory
        finetune=dataclasses.replace(base.finetune, from_checkpoint=str(parent.path.resolve()),
                                     data=str(Path(data).expanduser().resolve())),
    )
    return apply_overrides(hp, overrides)


@dataclass
class FinetuneData:
    """What the trainer reads: the tokenizer, the packed rows and the checks made on the way."""

    tokenizer: Any
    dataset: ConversationDataset
    report: ConversationReport


def load_finetune_data(hp: Hyperparameters, tokenizer: Any, report: ConversationReport | None = None) -> FinetuneData:
    """Read (unless `report` is given), validate, render and pack `finetune.data`.

    Invalid data raises DataError unless finetune.skip_invalid.
    """
    from engine.data.chat_template import default_template
    from engine.data.conversation_rows import build_dataset
    from engine.data.conversations import read_conversations, require_valid

    ft = hp.finetune
    if not ft.data:
        raise ConfigError("finetune.data is empty", hint="give the conversations with --data FILE")
    if report is None:
        report = read_conversations(ft.data, max_file_mb=ft.max_file_mb)
    conversations = require_valid(report, ft.data, skip_invalid=ft.skip_invalid)
    template = default_template(tokenizer) if ft.template == "auto" else ft.template
    dataset = build_dataset(conversations, tokenizer, template=template, seq_len=hp.train.train_seq_len,
                            val_fraction=ft.val_fraction, seed=hp.run.seed, overflow=ft.overflow,
                            skip_invalid=ft.skip_invalid)
    return FinetuneData(tokenizer, dataset, report)


def plan_steps(hp: Hyperparameters, train_rows: int, *, validate_each_epoch: bool = False) -> Hyperparameters:
    """hp with train.num_iterations covering finetune.epochs passes over the rows (and val once per epoch)."""
    steps = max(1, math.ceil(hp.finetune.epochs * train_rows / hp.train.batch_size))
    run = hp.run
    if validate_each_epoch:
        run = dataclasses.replace(run, val_every=max(1, math.ceil(train_rows / hp.train.batch_size)))
    return dataclasses.replace(hp, train=dataclasses.replace(hp.train, num_iterations=steps), run=run)


class ConversationBatches:
    """Fine-tuning batches: packed conversation rows in the one epoch shuffler's order, with their loss masks."""

    def __init__(self, rows: Any, micro_batch_size: int, ctx: Any, seed: int) -> None:
        from engine.data.epoch_order import ShuffledRowIndices

        self.rows = rows  # PackedRows: tokens and mask, (num_rows, seq_len + 1) each
        self.order = ShuffledRowIndices(len(rows), micro_batch_size, rank=ctx.rank, world_size=ctx.world_size,
                                        seed=seed)

    def next_batch(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        rows = self.order.next_rows()
        # pinned, non-blocking copies on CUDA: the step never waits for the transfer
        tokens = host_to_device(self.rows.tokens[rows], device).to(torch.int64)  # (micro, seq_len + 1)
        mask = host_to_device(self.rows.mask[rows], device)  # (micro, seq_len + 1)
        return tokens[:, :-1], tokens[:, 1:], mask[:, 1:]

    def state_dict(self) -> dict[str, int]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.order.load_state_dict(state)


class FinetuneTask(TrainingTask):
    """Conversation rows, a loss on assistant tokens only and the parent's full attention window."""

    kind = "finetune"
    data: FinetuneData

    def __init__(self, data: FinetuneData, parent: Parent | None, parent_spec: str) -> None:
        super().__init__(data)
        # a resumed run needs no parent: its weights come from the run's own checkpoint
        self.parent_checkpoint = parent
        self.parent = str(parent.path) if parent else parent_spec

    def build_model(self, hp: Hyperparameters, device: torch.device) -> torch.nn.Module:
        from engine.checkpoint import load_state_into
        from engine.model import GPT

        model = GPT(hp.model, max_seq_len=hp.train.train_seq_len).to(device)
        if self.parent_checkpoint is not None:
            load_state_into(model, self.parent_checkpoint.state_dict, str(self.parent_checkpoint.path))
            # the parent's tensors are in the model now; do not hold a second copy for the whole run
            self.parent_checkpoint = dataclasses.replace(self.parent_checkpoint, state_dict={})
        return model

    def build_optimizers(self, model: torch.nn.Module, hp: Hyperparameters,
                         ctx: Any) -> list[torch.optim.Optimizer]:
        from engine.train.muon import setup_optimizers

        ft, o = hp.finetune, hp.optim
        if ft.optimizer == "muon":
            scaled = dataclasses.replace(o, muon_lr=o.muon_lr * ft.muon_scale, adam_head_lr=o.adam_head_lr * ft.muon_scale,
                                         adam_embed_lr=o.adam_embed_lr * ft.muon_scale,
                                         adam_scalar_lr=o.adam_scalar_lr * ft.muon_scale)
            return setup_optimizers(model, scaled, rank=ctx.rank, world_size=ctx.world_size)
        # the original's choice: one AdamW over every parameter
        adamw = torch.optim.AdamW(model.parameters(), lr=ft.lr, weight_decay=ft.weight_decay)
        for group in adamw.param_groups:
            group["initial_lr"] = group["lr"]
        return [adamw]

    def build_batches(self, hp: Hyperparameters, ctx: Any) -> ConversationBatches:
        return ConversationBatches(self.data.dataset.train, hp.train.micro_batch_size, ctx, hp.run.seed)

    def window_blocks(self, hp: Hyperparameters, progress: float) -> int:
        # the parent was pretrained up to its full window; fine-tuning keeps it there
        from engine.train.schedules import window_blocks_for_progress

        return window_blocks_for_progress(1.0, hp.model.max_window_tokens, hp.model.attn_block_size)

    def validate(self, model: torch.nn.Module, hp: Hyperparameters, ctx: Any, window: Any,
                 device: torch.device) -> dict[str, float]:
        """Loss and bits per byte on the held-out conversations' assistant tokens."""
        from engine.data.prepare import token_byte_lengths
        from engine.inference.evaluate import Batch, evaluate_batches

        if not hasattr(self, "_token_bytes"):
            self._token_bytes = torch.tensor(token_byte_lengths(self.tokenizer), dtype=torch.float64)
        val, size = self.data.dataset.val, hp.train.micro_batch_size
        my_rows = list(range(ctx.rank, len(val), ctx.world_size))

        def batches() -> Iterator[Batch]:
            for start in range(0, len(my_rows), size):
                rows = torch.tensor(my_rows[start:start + size])
                batch = val.tokens[rows].to(device, torch.int64)  # (B, seq_len + 1)
                yield batch[:, :-1], batch[:, 1:], val.mask[rows, 1:].to(device)  # mask: (B, seq_len)

        result = evaluate_batches(model, batches(), self._token_bytes, ctx=ctx, window_blocks=window)
        return {"val_loss": result.loss, "val_bpb": result.bpb}

    def sample(self, model: torch.nn.Module, hp: Hyperparameters, device: torch.device) -> str:
        """The model's reply to the first held-out conversation's opening, as a short transcript."""
        prompt = self.data.dataset.sample_prompt
        answer = greedy_reply(model, self.tokenizer, prompt, self.data.dataset.template,
                              max_new_tokens=hp.run.sample_tokens, device=device)
        return "\n".join([*(f"{m['role']}: {m['content']}" for m in prompt), f"assistant: {answer}"])


def greedy_reply(model: torch.nn.Module, tokenizer: Any, messages: list[dict[str, str]], template: str, *,
                 max_new_tokens: int, device: torch.device | str = "cpu") -> str:
    """The model's most likely reply to `messages`, up to the template's end of turn."""
    from engine.data.chat_template import render, stop_conditions
    from engine.inference.generate import Generator, SamplingParams

    ids, _ = render(messages, template, tokenizer, add_generation_prompt=True)
    stop_ids, stop_strings = stop_conditions(template, tokenizer)
    generator = Generator(model, tokenizer, device=device, max_context=len(ids) + max_new_tokens + 1)
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, stop_strings=tuple(stop_strings),
                            stop_token_ids=tuple(stop_ids))
    return "".join(chunk.text for chunk in generator.generate(ids, params)).strip()


def build_trainer(run_dir: Path, resume: bool, stop: StopSignal) -> Trainer:
    from engine.data.tokenizer import load_tokenizer, tokenizer_from_payload
    from engine.train.distributed import init_distributed

    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist", hint="create runs with: nanogpt-tui finetune")
    hp = load_toml(run_dir / "config.toml")
    ctx = init_distributed(hp.run.device)
    torch.manual_seed(hp.run.seed)
    parent: Parent | None = None
    if resume and (run_dir / "tokenizer").is_dir():
        tokenizer = load_tokenizer(run_dir / "tokenizer")
    else:
        parent = read_parent(hp.finetune.from_checkpoint)
        if parent.model != hp.model:
            raise ConfigError(f"the run's [model] differs from the parent checkpoint {parent.path}",
                              hint="fine-tune with the parent's model shape (do not --set model.*)")
        tokenizer = tokenizer_from_payload(parent.tokenizer)
        if ctx.is_main:
            tokenizer.save(run_dir / "tokenizer")
    if tokenizer.vocab_size > hp.model.vocab_size or tokenizer.bos_id != hp.model.bos_id:
        raise ConfigError(f"the {tokenizer.kind} tokenizer (vocab {tokenizer.vocab_size}, bos {tokenizer.bos_id}) "
                          f"does not fit the model (vocab {hp.model.vocab_size}, bos {hp.model.bos_id})")
    data = load_finetune_data(hp, tokenizer)
    warnings = data.dataset.warnings + [f"skipped: {issue}" for issue in data.report.issues]
    if warnings:
        log.warning("%d warning(s):\n%s", len(warnings), "\n".join(f"  {line}" for line in first_few(warnings)))
    hp = plan_steps(hp, len(data.dataset.train))
    task = FinetuneTask(data, parent, hp.finetune.from_checkpoint)
    return Trainer(hp, run_dir, ctx, task, stop=stop, resume=resume)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune a GPT on conversations in a run directory")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    return run_entry_point(run_dir, lambda stop: build_trainer(run_dir, args.resume, stop))
