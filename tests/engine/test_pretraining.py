"""Pretraining end to end on tiny real models: in-process loop, resume, SIGTERM, 2-process gloo."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from engine.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint_file
from engine.errors import CheckpointError
from engine.metrics import read_metrics
from engine.runs import RunManager
from tests.helpers import tiny_config, write_corpus, stop_after_steps


def _trainer(run_dir: Path, resume: bool = False, stop_after: int | None = None):
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal

    stop = StopSignal()
    return stop_after_steps(build_trainer(run_dir, resume, stop), stop, stop_after)


def _make_run(tmp_path: Path, name: str, *overrides: str) -> Path:
    corpus = write_corpus(tmp_path)
    return RunManager().create(tiny_config(corpus, *overrides), name).path


def test_loss_goes_down_and_files_are_written(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path, "down", "train.num_iterations=30", "run.val_every=10")
    assert _trainer(run_dir).run() == "finished"
    events = read_metrics(run_dir / "metrics.jsonl")
    train = [e["loss"] for e in events if e["kind"] == "train"]
    val = [e["val_loss"] for e in events if e["kind"] == "val"]
    assert len(train) == 30
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 1.0, f"training loss did not fall: {train}"
    assert val[-1] < val[0], f"val loss did not fall: {val}"
    assert all(e["val_bpb"] > 0 for e in events if e["kind"] == "val")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 30
    info = latest_checkpoint(run_dir / "checkpoints")
    assert info is not None and info.step == 30 and info.meta["val_loss"] == pytest.approx(val[-1], abs=1e-4)
    assert (run_dir / "tokenizer" / "tokenizer.json").exists()


@pytest.mark.parametrize("sampling", ["shuffled", "sequential"])
def test_resume_matches_an_uninterrupted_run(tmp_path: Path, sampling: str) -> None:
    straight = _make_run(tmp_path, "straight", "run.checkpoint_every=0", f"data.sampling='{sampling}'")
    _trainer(straight).run()
    interrupted = _make_run(tmp_path, "interrupted", "run.checkpoint_every=0", f"data.sampling='{sampling}'")
    assert _trainer(interrupted, stop_after=5).run() == "stopped"
    assert latest_checkpoint(interrupted / "checkpoints").step == 5
    assert _trainer(interrupted, resume=True).run() == "finished"
    a = read_checkpoint_file(latest_checkpoint(straight / "checkpoints").path)
    b = read_checkpoint_file(latest_checkpoint(interrupted / "checkpoints").path)
    assert a["step"] == b["step"] == 12
    for key, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][key], tensor, atol=1e-5, rtol=1e-4,
                                   msg=lambda m: f"{key} differs after resume: {m}")


def test_resume_refuses_a_changed_model_shape(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path, "shape", "train.num_iterations=2")
    _trainer(run_dir).run()
    config = (run_dir / "config.toml").read_text().replace("model_dim = 64", "model_dim = 128")
    (run_dir / "config.toml").write_text(config)
    with pytest.raises(CheckpointError, match="another shape"):
        _trainer(run_dir, resume=True)


@pytest.mark.parametrize(("written", "resumed"), [("shuffled", "sequential"), ("sequential", "shuffled")])
def test_resume_refuses_a_changed_sampling(tmp_path: Path, written: str, resumed: str) -> None:
    run_dir = _make_run(tmp_path, "order", "train.num_iterations=2", f"data.sampling='{written}'")
    _trainer(run_dir).run()
    config = (run_dir / "config.toml").read_text().replace(f'sampling = "{written}"', f'sampling = "{resumed}"')
    (run_dir / "config.toml").write_text(config)
    with pytest.raises(CheckpointError, match=f"written by {written} sampling") as caught:
        _trainer(run_dir, resume=True)
    assert "data.sampling the run was started with" in caught.value.hint


def test_missing_run_directory(tmp_path: Path) -> None:
    from engine.errors import EngineError
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal

    with pytest.raises(EngineError, match="does not exist"):
        build_trainer(tmp_path / "nope", False, StopSignal())


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_marks_stopped(tmp_path: Path) -> None:
    manager = RunManager()
    corpus = write_corpus(tmp_path)
    info = manager.create_and_launch(tiny_config(corpus, "train.num_iterations=100000", "run.val_every=0",
                                                 "run.checkpoint_every=0"), "sigterm")
    deadline = time.monotonic() + 120
    while not any(e["kind"] == "train" for e in read_metrics(info.path / "metrics.jsonl")):
        assert time.monotonic() < deadline, (info.path / "train.log").read_text()
        assert manager.get("sigterm").state == "running", (info.path / "train.log").read_text()
        time.sleep(0.2)
    manager.stop("sigterm")
    final = manager.wait("sigterm", timeout=120)
    assert final.state == "stopped", (info.path / "train.log").read_text()
    checkpoint = latest_checkpoint(info.path / "checkpoints")
    assert checkpoint is not None and checkpoint.step == final.step > 0


@pytest.mark.slow
def test_two_process_gloo_run(tmp_path: Path) -> None:
    manager = RunManager()
    corpus = write_corpus(tmp_path)
    info = manager.create_and_launch(tiny_config(corpus, "train.num_iterations=20", "run.val_every=10",
                                                 "run.checkpoint_every=10"), "ddp", nproc=2)
    final = manager.wait("ddp", timeout=240)
    log = (info.path / "train.log").read_text()
    assert final.state == "finished", log
    events = read_metrics(info.path / "metrics.jsonl")
    assert [e["step"] for e in events if e["kind"] == "train"] == list(range(1, 21))
    assert [c.step for c in list_checkpoints(info.path / "checkpoints")] == [10, 20]
    assert "2 process(es)" in json.dumps(events)
