"""The training loop never makes the host wait for the device between log flushes: every
.item()/float()/int()/bool()/.tolist()/.numpy() on a tensor and every torch.cuda.synchronize is
counted through patched hooks while a real (tiny) run trains."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import engine.train.trainer

SYNCING = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


def _count_syncs(monkeypatch: pytest.MonkeyPatch, where: Callable[[], Any]) -> Counter:
    """Patch every host-sync entry point to record `where()` (e.g. the current step) at each call."""
    seen: Counter = Counter()

    def counting(name: str, original: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[(where(), name)] += 1
            return original(*args, **kwargs)
        return wrapper

    for name in SYNCING:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch.cuda, "synchronize", counting("synchronize", torch.cuda.synchronize))
    return seen


def _trainer(tmp_path: Path, *overrides: str) -> engine.train.trainer.Trainer:
    from engine.runs import RunManager
    from engine.train.pretraining import build_trainer
    from engine.train.stopping import StopSignal
    from tests.helpers import tiny_config, write_corpus

    hp = tiny_config(write_corpus(tmp_path), "train.num_iterations=8", "run.val_every=0", "run.sample_tokens=0",
                     "run.checkpoint_every=0", "run.log_every=1", *overrides)
    return build_trainer(RunManager().create(hp, "sync").path, False, StopSignal())


def test_a_training_step_never_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(tmp_path, "train.batch_size=16")  # gradient accumulation over micro-batches too
    assert trainer.accumulation > 1
    trainer.train_step()  # the first step may build caches
    seen = _count_syncs(monkeypatch, lambda: "step")
    losses = [trainer.train_step() for _ in range(3)]
    assert not seen, f"train_step made the host wait: {dict(seen)}"
    assert all(loss.ndim == 0 for loss in losses)


def test_the_loop_syncs_only_when_it_flushes_log_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.metrics import read_metrics

    # every step gets a train line, but the host waits only at the first and the last step
    monkeypatch.setattr(engine.train.trainer, "LOG_FLUSH_S", float("inf"))
    trainer = _trainer(tmp_path)
    seen = _count_syncs(monkeypatch, lambda: trainer.step)
    assert trainer.run() == "finished"
    steps_with_syncs = sorted({step for step, _ in seen if 0 < step < 8})
    assert steps_with_syncs == [1], f"host syncs after steps {steps_with_syncs}: {dict(seen)}"
    during_step_one = sum(count for (step, _), count in seen.items() if step == 1)
    assert during_step_one == 1, f"the first flush waits more than once: {dict(seen)}"
    monkeypatch.undo()
    lines = [e for e in read_metrics(trainer.run_dir / "metrics.jsonl") if e["kind"] == "train"]
    assert [e["step"] for e in lines] == list(range(1, 9)), "buffered train lines went missing"
    assert all(e["loss"] > 0 and e["step_time_ms"] > 0 for e in lines)


def test_a_non_finite_loss_still_ends_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import EngineError

    monkeypatch.setattr(engine.train.trainer, "LOG_FLUSH_S", float("inf"))
    trainer = _trainer(tmp_path)
    original = trainer.train_step
    trainer.train_step = lambda: original() * (float("nan") if trainer.step == 3 else 1.0)
    with pytest.raises(EngineError, match="became nan at step 4"):
        trainer.run()
