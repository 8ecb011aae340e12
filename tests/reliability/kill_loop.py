"""Kill a training run's process group at random moments, resume it, and check every checkpoint.

Used by tests/reliability/test_kill_resume.py and benchmarks/faults.py.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint_file
from engine.errors import CheckpointError
from engine.metrics import read_metrics
from engine.runs import RunManager, pid_alive
from tests.helpers import tiny_config, write_corpus


@dataclass
class KillReport:
    kills: int = 0
    resumed_ok: int = 0
    corrupt_checkpoints: int = 0
    max_stop_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _last_train_step(run_dir: Path, since: float = 0.0) -> int:
    """The newest step trained after `since` (a killed process may have logged steps it never saved)."""
    steps = [e["step"] for e in read_metrics(run_dir / "metrics.jsonl") if e["kind"] == "train" and e["t"] >= since]
    return steps[-1] if steps else 0


def check_checkpoints(run_dir: Path) -> int:
    """Number of listed checkpoints that fail to load (must be 0)."""
    corrupt = 0
    for info in list_checkpoints(run_dir / "checkpoints"):
        try:
            data = read_checkpoint_file(info.path)
            assert data["step"] == info.step
        except (CheckpointError, AssertionError, KeyError):
            corrupt += 1
    return corrupt


def kill_loop(workdir: Path, kills: int, seed: int = 0, name: str = "faults") -> KillReport:
    rng = random.Random(seed)
    manager = RunManager()
    corpus = write_corpus(workdir)
    # a checkpoint every step, so kills often land in the middle of a write
    hp = tiny_config(corpus, "train.num_iterations=100000", "run.val_every=0", "run.checkpoint_every=1")
    manager.create(hp, name)
    run_dir = manager.run_dir(name)
    report = KillReport()
    for _ in range(kills):
        resume = latest_checkpoint(run_dir / "checkpoints") is not None
        before = latest_checkpoint(run_dir / "checkpoints")
        launched_at = time.time()
        info = manager.launch(name, resume=resume)
        start_step = before.step if before else 0
        _wait(lambda: _last_train_step(run_dir, launched_at) > start_step or manager.get(name).state != "running",
              120, "the run to train a step")
        if manager.get(name).state != "running":
            report.notes.append(f"run ended by itself: {manager.get(name).message}")
            break
        # every launch after a kill that trains past the newest checkpoint is a successful recovery
        report.resumed_ok += 1 if report.kills else 0
        time.sleep(rng.uniform(0.0, 1.5))
        os.killpg(info.pid, signal.SIGKILL)
        report.kills += 1
        _wait(lambda: not pid_alive(info.pid), 30, "the killed run to disappear")
        assert manager.get(name).state == "failed", "a killed run must not show as running"
        report.corrupt_checkpoints += check_checkpoints(run_dir)
    # the last kill is followed by one more resume, which must continue past the checkpoint
    before = latest_checkpoint(run_dir / "checkpoints")
    if before is not None:
        launched_at = time.time()
        info = manager.launch(name, resume=True)
        _wait(lambda: _last_train_step(run_dir, launched_at) > before.step, 120, "the final resume to train")
        started = time.monotonic()
        manager.stop(name)
        final = manager.wait(name, timeout=120)
        report.max_stop_s = max(report.max_stop_s, time.monotonic() - started)
        if final.state == "stopped":
            report.resumed_ok += 1
        report.corrupt_checkpoints += check_checkpoints(run_dir)
    return report
