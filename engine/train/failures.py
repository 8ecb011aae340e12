"""Training failures a user can act on, as EngineErrors whose hint names the setting to change."""

from __future__ import annotations

import torch

from engine.config import Hyperparameters
from engine.errors import DeviceError, RunError


def compile_failure_error(err: BaseException) -> RunError:
    """A RunError for a failed torch.compile, with the switch that trains without it."""
    root = err
    # Dynamo wraps the backend's own error (inner_exception, or the cause); that one says what broke
    while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
        root = inner
    first_line = (str(root).strip().splitlines() or [""])[0]
    return RunError(f"torch.compile failed: {type(root).__name__}: {first_line}",
                    hint="train without compiling: --set run.compile=off (slower; the log holds the traceback)")


def is_compile_failure(err: BaseException) -> bool:
    """Whether `err` comes out of torch.compile (Dynamo tracing or the backend, e.g. Inductor/Triton)."""
    return isinstance(err, torch._dynamo.exc.TorchDynamoException)


def out_of_memory_error(hp: Hyperparameters | None, world_size: int = 1, validating: bool = False) -> DeviceError:
    """A DeviceError for an out-of-memory step whose hint names the settings to change and their new values.

    `validating`: the OOM came from validation, which runs sequences of train.val_seq_len.
    """
    message = "the device ran out of memory"
    if hp is None:
        return DeviceError(message, hint="lower train.micro_batch_size or train.train_seq_len "
                                         "(more accumulation steps keep the batch)")
    t, block = hp.train, hp.model.attn_block_size
    if validating:
        shorter = max(block, t.val_seq_len // 2 // block * block)
        return DeviceError(f"{message} during validation",
                           hint=f"lower train.val_seq_len (now {t.val_seq_len}, {t.val_seq_len / t.train_seq_len:g}x "
                                f"the training length): --set train.val_seq_len={shorter}")
    if t.micro_batch_size > 1:
        smaller = t.micro_batch_size // 2
        while t.batch_size % (world_size * smaller):
            smaller -= 1
        steps = t.batch_size // (world_size * smaller)
        hint = (f"lower train.micro_batch_size (now {t.micro_batch_size}): --set train.micro_batch_size={smaller} "
                f"accumulates {steps} micro-batches per step and keeps the batch of {t.batch_size} sequences")
    else:
        shorter = max(block, t.train_seq_len // 2 // block * block)
        hint = (f"lower train.train_seq_len (now {t.train_seq_len}): --set train.train_seq_len={shorter} "
                f"train.batch_size={t.batch_size * 2} keeps the tokens per step (more accumulation steps), "
                "or spread the batch over more GPUs with --nproc")
    return DeviceError(message, hint=hint)
