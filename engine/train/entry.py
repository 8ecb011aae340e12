"""Running a Trainer as a process's whole job: every failure becomes a `failed` status with a readable message.

The entry points (`engine/train/pretraining.py`, `engine/train/finetune.py`) build their trainer
inside `run_entry_point`, so a failure while building (bad config, missing shards) is recorded too.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from engine.errors import EngineError, cli_lines
from engine.runs.protocol import update_status
from engine.train.distributed import launched_world_size, shutdown
from engine.train.failures import compile_failure_error, is_compile_failure, out_of_memory_error
from engine.train.stopping import StopSignal
from engine.train.trainer import Trainer


def run_entry_point(run_dir: Path, build: Callable[[StopSignal], Trainer], stop: StopSignal | None = None) -> int:
    """Run a trainer, turning every failure into a `failed` status with a readable message.

    Entry points pass a StopSignal installed before their heavy imports, so a stop sent while the
    process starts is still honoured.
    """
    if stop is None:
        stop = StopSignal()
        stop.install()
    rank = int(os.environ.get("RANK", "0"))
    trainer: Trainer | None = None
    try:
        trainer = build(stop)
        trainer.run()
        return 0
    except EngineError as err:
        print(cli_lines(err), file=sys.stderr, flush=True)
        _record_failure(run_dir, rank, err.message, trainer)
        return 1
    except torch.OutOfMemoryError as err:
        error = out_of_memory_error(trainer.hp if trainer else None, trainer.ctx.world_size if trainer else 1,
                                    validating=trainer is not None and trainer.validating)
        print(cli_lines(error, str(err).splitlines()[0]), file=sys.stderr, flush=True)
        # the fix is a config change, so the status (what the TUI shows) carries the hint too
        _record_failure(run_dir, rank, f"{error.message}: {error.hint}", trainer)
        return 1
    except Exception as err:  # noqa: BLE001 - the log keeps the traceback; status gets the one-line reason
        traceback.print_exc()
        if trainer is not None and trainer.fast_paths.compile and is_compile_failure(err):
            failure = compile_failure_error(err)
            print(cli_lines(failure), file=sys.stderr, flush=True)
            _record_failure(run_dir, rank, f"{failure.message}; {failure.hint}", trainer)
            return 1
        message = f"{type(err).__name__}: {err}"
        if launched_world_size() > 1 and "Connection" in str(err):
            message = ("lost contact with another process of this run (it crashed or was killed); "
                       "torchrun's report at the end of train.log names it")
        _record_failure(run_dir, rank, message, trainer)
        return 1
    finally:
        if trainer is not None:
            # let the trainer (model, optimisers) be collected before the groups go; the stop handler
            # holds it through on_timeout
            ctx, trainer, stop.on_timeout = trainer.ctx, None, None
            shutdown(ctx)


def _record_failure(run_dir: Path, rank: int, message: str, trainer: Trainer | None) -> None:
    if rank != 0 or not run_dir.is_dir():
        return
    if trainer is not None and trainer.metrics is not None:
        trainer.report("status", state="failed", message=message)
    update_status(run_dir, state="failed", message=message, ended_at=time.time())
