"""Process-group setup for torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or a single plain process."""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from engine.errors import DeviceError

# rank 0 prepares the data (tokenizer training, shards) while the others wait in a barrier; the
# default 10 minutes can run out on a large corpus
PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # a gloo group for host-side agreement (the stop flag) in an NCCL run: no device sync
    host_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str) -> str:
    """auto: CUDA when present, else CPU (MPS only when asked for: its kernels lag for training)."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("run.device is 'cuda' but no CUDA GPU is available", hint="use run.device=cpu or auto")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("run.device is 'mps' but MPS is not available", hint="use run.device=cpu or auto")
    return requested


def launched_world_size() -> int:
    """How many processes torchrun started for this run (WORLD_SIZE); 1 for a plain process."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(requested_device: str) -> DistContext:
    """Join torchrun's process group when launched by it (NCCL on CUDA, gloo on CPU)."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = launched_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    kind = resolve_device(requested_device)
    if kind == "cuda":
        from engine.train.device import configure_cuda_allocator

        configure_cuda_allocator()  # before this process's first CUDA allocation
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible",
                hint="use --nproc no larger than the number of GPUs",
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device(kind)
    host_group = None
    if world_size > 1:
        backend = "nccl" if kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if kind == "cuda" else None,
                                timeout=PROCESS_GROUP_TIMEOUT)
        if kind == "cuda":
            host_group = dist.new_group(backend="gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(rank, world_size, local_rank, device, host_group)


def all_reduce_mean_(tensors: list[torch.Tensor], world_size: int) -> None:
    """Average tensors across ranks, one flat collective per dtype, so bf16 gradients travel as bf16.

    NCCL averages in the collective; gloo has no AVG, so SUM then divide.
    """
    if world_size == 1 or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    average = dist.get_backend() == "nccl"
    for bucket in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in bucket])  # (total numel,) in the bucket's dtype
        dist.all_reduce(flat, op=dist.ReduceOp.AVG if average else dist.ReduceOp.SUM)
        if not average:
            flat.div_(world_size)
        offset = 0
        for tensor in bucket:
            count = tensor.numel()
            tensor.copy_(flat[offset:offset + count].view_as(tensor))
            offset += count


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def agree(stop: bool, train_time_s: float, ctx: DistContext) -> tuple[bool, float]:
    """(any rank stops, the longest training time of any rank): what every rank bases the next step on.

    A CPU tensor over gloo (the host group in an NCCL run), so the host never waits for the GPU;
    one collective per step. Ranks measure their own training time, so a
    time-budgeted run would otherwise give them different learning rates and different last steps.
    """
    if not ctx.distributed:
        return stop, train_time_s
    tensor = torch.tensor([1.0 if stop else 0.0, train_time_s], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=ctx.host_group)
    flag, seconds = tensor.tolist()
    return flag > 0, seconds


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Destroy the process groups (the host group with them) while the interpreter is still whole.

    Anything left holding a group or a finished collective (an optimiser or trainer kept alive by a
    reference cycle) is collected first: freed later, during interpreter finalization, gloo's worker
    threads can abort the process ("terminate called without an active exception") after a run that
    finished. No barrier: a rank whose peer died must still get out.
    """
    if ctx.distributed and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def exit_worker(code: int) -> NoReturn:
    """End this process with `code`; a rank of a multi-process run skips interpreter finalization.

    Even after shutdown(), gloo's threads sometimes abort a rank while the interpreter tears down
    ("terminate called without an active exception", SIGABRT), and torchrun then reports a finished
    run as failed: 1 in 2 to 5 whole-suite runs here, in a different gloo test each time. Nothing is lost by
    leaving with os._exit: checkpoints and status are saved atomically before this, metrics are
    flushed line by line, and the standard streams and log handlers are flushed here.
    """
    if launched_world_size() <= 1:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can reach it anyway
            pass
    os._exit(code)
