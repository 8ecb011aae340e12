"""Gradient accumulation: 1 rank x 4 micro-batches = 2 ranks x 2 = 4 ranks x 1 (gloo), after one real step.

The shard stream hands micro-step k of rank r the sequence k * world + r, so every layout sees the
same four sequences in one step; only who computes which differs. The model runs in float64, so
what is left of the difference is summation order (and Muon's fp32 Newton-Schulz on CPU).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from engine.config import Hyperparameters, apply_overrides, preset
from engine.data.shards import write_shard
from tests.helpers import assert_close_scaled

SEQ_LEN, BATCH, VOCAB = 32, 4, 64


def _hyperparameters() -> Hyperparameters:
    return apply_overrides(preset("shakespeare-cpu"), [
        f"model.vocab_size={VOCAB}", "model.num_layers=2", "model.num_heads=2", "model.head_dim=16",
        "model.model_dim=32", "model.num_value_embeds=1", "model.window_pattern='LS'", "model.max_window_tokens=32",
        "model.attn_block_size=8", "model.bos_id=0", f"train.train_seq_len={SEQ_LEN}", f"train.val_seq_len={SEQ_LEN}",
        f"train.batch_size={BATCH}", "train.micro_batch_size=1", "train.num_iterations=10", "train.time_budget_s=0",
        "run.device='cpu'",
    ])


def _one_step(rank: int, world_size: int, port: int, shard: str, out_dir: str) -> None:
    """Build the real Trainer on this rank, take one optimiser step, save loss and weights from rank 0."""
    import torch.distributed as dist

    from engine.train.distributed import exit_worker, init_distributed, shutdown
    from engine.train.task import PretrainTask
    from engine.train.trainer import StopSignal, Trainer

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ctx = init_distributed("cpu")
        torch.manual_seed(0)  # every rank starts from the same weights, as pretraining seeds them
        data = SimpleNamespace(train_files=[Path(shard)], val_files=[], tokenizer=None)
        run_dir = Path(out_dir) / f"run-{world_size}"
        run_dir.mkdir(exist_ok=True)
        trainer = Trainer(_hyperparameters(), run_dir, ctx, PretrainTask(data), stop=StopSignal(), resume=False)
        assert trainer.accumulation == BATCH // world_size
        loss = trainer.train_step().to(torch.float64)
        if ctx.distributed:
            dist.all_reduce(loss)
            loss /= world_size
        if ctx.is_main:
            torch.save({"loss": float(loss), "model": trainer.model.state_dict()}, Path(out_dir) / f"{world_size}.pt")
        del trainer  # as run_entry_point does: collectable before the process groups are destroyed
        shutdown(ctx)
    finally:
        torch.set_default_dtype(previous_dtype)
    if world_size > 1:
        exit_worker(0)  # as the entry points leave a rank: past gloo's teardown at finalization
        for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_one_two_and_four_ranks_take_the_same_step(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, size=BATCH * SEQ_LEN * 3)
    tokens[::23] = 0  # documents of 23 tokens, so the masks cross sequence and rank boundaries differently
    shard = tmp_path / "train_000000.bin"
    write_shard(shard, tokens)

    _one_step(0, 1, _free_port(), str(shard), str(tmp_path))
    for world_size in (2, 4):
        mp.spawn(_one_step, args=(world_size, _free_port(), str(shard), str(tmp_path)), nprocs=world_size, join=True)

    results = {world: torch.load(tmp_path / f"{world}.pt", weights_only=True) for world in (1, 2, 4)}
    reference = results[1]
    assert reference["model"]["lm_head.weight"].abs().sum() > 0, "the step did not move the zero-initialised head"
    for world in (2, 4):
        assert results[world]["loss"] == pytest.approx(reference["loss"], rel=1e-9), f"{world} ranks: loss differs"
        for key, tensor in reference["model"].items():
            assert_close_scaled(results[world]["model"][key], tensor, rel=1e-5,
                                       msg=lambda m, key=key, world=world: f"{key} after {world} ranks' step: {m}")
