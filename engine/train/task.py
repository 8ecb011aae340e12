"""What a training run trains on: the task object the Trainer is given.

The Trainer (`engine/train/trainer.py`) owns the loop: schedule, accumulation, the optimiser steps,
metrics, checkpoints, stopping and exact resume. A task supplies what differs between runs: the
model it starts from, its optimisers, its batches, its attention window, how it validates and what
it samples. `PretrainTask` is here; `FinetuneTask` is in `engine/train/finetune.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import torch
from torch import Tensor

from engine.config import Hyperparameters
from engine.train.device import host_to_device
from engine.train.distributed import DistContext

# (inputs, targets, loss_mask), each (micro_batch, seq_len) on the device; mask None = every token
Batch = tuple[Tensor, Tensor, Tensor | None]


class Batches(Protocol):
    """A resumable source of training micro-batches; its state is the checkpoint's data position."""

    def next_batch(self, device: torch.device) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainingTask(ABC):
    """The parts of a run the Trainer asks for; `kind` and `parent` go into every checkpoint."""

    kind: str
    parent: str | None = None

    def __init__(self, data: Any) -> None:
        self.data = data
        self.tokenizer = data.tokenizer

    @abstractmethod
    def build_model(self, hp: Hyperparameters, device: torch.device) -> torch.nn.Module: ...

    def build_optimizers(self, model: torch.nn.Module, hp: Hyperparameters,
                         ctx: DistContext) -> list[torch.optim.Optimizer]:
        """Muon for the block matrices, Adam for the rest (the original's split)."""
        from engine.train.muon import setup_optimizers

        return setup_optimizers(model, hp.optim, rank=ctx.rank, world_size=ctx.world_size)

    @abstractmethod
    def build_batches(self, hp: Hyperparameters, ctx: DistContext) -> Batches: ...

    @abstractmethod
    def window_blocks(self, hp: Hyperparameters, progress: float) -> int:
        """The sliding window, in attention blocks, at `progress` (0..1) through the run."""

    @abstractmethod
    def validate(self, model: torch.nn.Module, hp: Hyperparameters, ctx: DistContext, window: Any,
                 device: torch.device) -> dict[str, float]:
        """{"val_loss", "val_bpb"} over this task's held-out data, every rank taking part."""

    @abstractmethod
    def sample(self, model: torch.nn.Module, hp: Hyperparameters, device: torch.device) -> str:
        """A short text from the model for the log (rank 0 only)."""


class ShardBatches:
    """Pretraining batches: flat token streams (sequential shards or shuffled windows) cut to rows."""

    def __init__(self, stream: Any, micro_batch_size: int, seq_len: int) -> None:
        self.stream, self.shape = stream, (micro_batch_size, seq_len)

    def next_batch(self, device: torch.device) -> Batch:
        inputs, targets = next(self.stream)
        # copied as stored (int32/int64), widened on the device
        return (host_to_device(inputs, device).to(torch.int64).view(self.shape),
                host_to_device(targets, device).to(torch.int64).view(self.shape), None)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


class PretrainTask(TrainingTask):
    """Next-token prediction on `.bin` shards with the window growing over the run."""

    kind = "pretrain"

    def build_model(self, hp: Hyperparameters, device: torch.device) -> torch.nn.Module:
        from engine.model import GPT

        t = hp.train
        model = GPT(hp.model, max_seq_len=max(t.train_seq_len, t.val_seq_len)).to(device)
        # samples and longer validation rows read no farther back than training does, as after loading
        model.attention_limit = t.train_seq_len
        return model

    def build_batches(self, hp: Hyperparameters, ctx: DistContext) -> Batches:
        from engine.data.shards import ShardStream

        t = hp.train
        if hp.data.sampling == "shuffled":
            from engine.data.windows import ShuffledRowStream

            stream: Any = ShuffledRowStream(self.data.train_files, t.micro_batch_size, t.train_seq_len,
                                            rank=ctx.rank, world_size=ctx.world_size, seed=hp.run.seed)
        else:
            stream = ShardStream(self.data.train_files, batch_size=t.micro_batch_size * t.train_seq_len * ctx.world_size,
                                 rank=ctx.rank, world_size=ctx.world_size, cycle=True)
        return ShardBatches(stream, t.micro_batch_size, t.train_seq_len)

    def window_blocks(self, hp: Hyperparameters, progress: float) -> int:
        from engine.train.schedules import window_blocks_for_progress

        m = hp.model
        return window_blocks_for_progress(progress, m.max_window_tokens, m.attn_block_size)

    def validate(self, model: torch.nn.Module, hp: Hyperparameters, ctx: DistContext, window: Any,
                 device: torch.device) -> dict[str, float]:
        from engine.data.prepare import token_byte_lengths
        from engine.data.shards import _load_data_shard
        from engine.inference.evaluate import evaluate_tokens

        if not hasattr(self, "_val_tokens"):  # read once, kept for the run's later validations
            self._val_tokens = torch.cat([_load_data_shard(f).to(torch.int64) for f in self.data.val_files])
            self._token_bytes = torch.tensor(token_byte_lengths(self.tokenizer), dtype=torch.float64)
        t = hp.train
        result = evaluate_tokens(model, self._val_tokens, t.val_seq_len, self._token_bytes,
                                 batch_size=t.micro_batch_size, window_blocks=window,
                                 max_tokens=hp.data.val_tokens, ctx=ctx, device=device)
        return {"val_loss": result.loss, "val_bpb": result.bpb}

    def sample(self, model: torch.nn.Module, hp: Hyperparameters, device: torch.device) -> str:
        from engine.train.train_samples import sample_text

        return sample_text(model, self.tokenizer, hp.run.sample_prompt, max_new_tokens=hp.run.sample_tokens,
                           temperature=0.8, top_k=50, seed=hp.run.seed, device=device)
