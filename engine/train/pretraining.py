"""Pretraining: `python -m engine.pretraining --run-dir D` (that module is the entry point) or under torchrun.

Reads the run's config.toml, prepares data, trains with Muon + Adam, and writes metrics,
checkpoints and status into the run directory. SIGTERM saves a checkpoint and stops cleanly.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from engine.train.stopping import StopSignal

if TYPE_CHECKING:
    from engine.train.trainer import Trainer

log = logging.getLogger(__name__)


def build_trainer(run_dir: Path, resume: bool, stop: StopSignal) -> Trainer:
    import torch

    from engine.config import Hyperparameters, load_toml
    from engine.data.prepare import prepare_data
    from engine.errors import ConfigError, EngineError
    from engine.train.distributed import barrier, init_distributed
    from engine.train.task import PretrainTask
    from engine.train.trainer import Trainer

    if not run_dir.is_dir():
        raise EngineError(f"run directory {run_dir} does not exist", hint="create runs with: nanogpt-tui train")
    hp: Hyperparameters = load_toml(run_dir / "config.toml")
    ctx = init_distributed(hp.run.device)
    torch.manual_seed(hp.run.seed)
    if ctx.is_main:
        data = prepare_data(hp.data, run_dir, is_main=True)
    barrier(ctx)
    if not ctx.is_main:
        data = prepare_data(hp.data, run_dir, is_main=False)
    tokenizer = data.tokenizer
    if tokenizer.vocab_size > hp.model.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but model.vocab_size is {hp.model.vocab_size}",
            hint=f"set model.vocab_size={tokenizer.vocab_size} (or larger)",
        )
    if tokenizer.bos_id != hp.model.bos_id:
        raise ConfigError(
            f"the tokenizer's document separator is {tokenizer.bos_id} but model.bos_id is {hp.model.bos_id}",
            hint=f"set model.bos_id={tokenizer.bos_id}",
        )
    return Trainer(hp, run_dir, ctx, PretrainTask(data), stop=stop, resume=resume)


def main(argv: list[str] | None = None) -> int:
    stop = StopSignal()
    stop.install()
    parser = argparse.ArgumentParser(description="Pretrain a GPT in a run directory")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args = parser.parse_args(argv)
    from engine.train.entry import run_entry_point  # torch loads here, after the stop handler is in place

    return run_entry_point(args.run_dir.resolve(), lambda stop: build_trainer(args.run_dir.resolve(), args.resume, stop), stop)
