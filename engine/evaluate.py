"""Validation loss and bits per byte; the same numbers for pretraining, fine-tuning and `eval`.

Bits per byte = total cross-entropy in nats over the targets / (ln 2 x the targets' UTF-8 bytes),
so models with different vocabularies compare fairly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.distributed import DistContext, all_reduce_sum


@dataclass(frozen=True)
class LossResult:
    loss: float  # mean nats per token
    bpb: float  # bits per UTF-8 byte
    tokens: int
    bytes: int


def loss_and_bpb(total_nats: float, total_tokens: int, total_bytes: int) -> LossResult:
    loss = total_nats / max(total_tokens, 1)
    bpb = total_nats / (math.log(2) * total_bytes) if total_bytes else float("nan")
    return LossResult(loss, bpb, total_tokens, total_bytes)


@torch.inference_mode()
def evaluate_tokens(
    model: torch.nn.Module,
    tokens: Tensor,
    seq_len: int,
    token_bytes: Tensor,
    *,
    batch_size: int = 1,
    window_blocks: int | None = None,
    max_tokens: int = 0,
    ctx: DistContext | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[float], None] | None = None,
) -> LossResult:
    """Summed loss over `tokens` (1-D) cut into rows of seq_len; rows are split across ranks.

    token_bytes: (V,) byte length per token id. Targets that are special tokens count 0 bytes.
    """
    usable = tokens.numel() - 1
    if max_tokens:
        usable = min(usable, max_tokens)
    num_rows = usable // seq_len
    if num_rows == 0:
        # a short text: evaluate it as one row, which the model accepts when padded to a block
        num_rows, seq_len = 1, usable
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    token_bytes = token_bytes.to(device)
    total_nats = total_bytes = total_tokens = 0.0
    was_training = model.training
    model.eval()
    my_rows = list(range(rank, num_rows, world))
    for start in range(0, len(my_rows), batch_size):
        rows = my_rows[start:start + batch_size]
        inputs = torch.stack([tokens[r * seq_len:(r + 1) * seq_len] for r in rows]).to(device, torch.int64)
        targets = torch.stack([tokens[r * seq_len + 1:(r + 1) * seq_len + 1] for r in rows]).to(device, torch.int64)
        loss_sum = model(inputs, targets, window_blocks, reduction="sum")  # (B, T) rows summed
        total_nats += float(loss_sum)
        total_tokens += targets.numel()
        total_bytes += float(token_bytes[targets].sum())
        if progress is not None:
            progress(min(1.0, (start + len(rows)) / max(len(my_rows), 1)))
    model.train(was_training)
    if ctx is not None:
        total_nats, total_tokens, total_bytes = all_reduce_sum([total_nats, total_tokens, total_bytes], ctx)
    return loss_and_bpb(total_nats, int(total_tokens), int(total_bytes))
