"""Disk full, two viewers, hostile checkpoints and absurd configs: refused or survived, never corrupted."""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint_file
from engine.config import apply_overrides, preset
from engine.errors import CheckpointError, ConfigError, DataError, RunError
from engine.metrics import read_metrics
from engine.runs import RunManager
from tests.helpers import tiny_config, write_corpus

ROOT = Path(__file__).resolve().parents[2]


def test_disk_full_keeps_the_previous_checkpoint_and_says_why(tmp_path: Path, caplog, monkeypatch) -> None:
    import engine.checkpoint as checkpoint_module
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal

    run_dir = RunManager().create(tiny_config(write_corpus(tmp_path)), "full").path
    real_write = checkpoint_module.atomic_write
    calls = {"n": 0}

    def write_until_full(path, write):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, write)

    monkeypatch.setattr(checkpoint_module, "atomic_write", write_until_full)
    assert build_trainer(run_dir, False, StopSignal()).run() == "finished"
    kept = list_checkpoints(run_dir / "checkpoints")
    assert [c.step for c in kept] == [6], "the checkpoint written before the disk filled must stay"
    assert read_checkpoint_file(kept[0].path)["step"] == 6
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "a failed save must not leave temp files"
    assert "No space left on device" in caplog.text, "train.log must say why the checkpoint failed"
    statuses = [e for e in read_metrics(run_dir / "metrics.jsonl") if e["kind"] == "status"]
    assert any("checkpoint failed" in e["message"] for e in statuses), "the dashboard must learn of the failure"
    assert "final checkpoint could not be written" in RunManager().get("full").message


def test_two_launches_with_one_name_only_one_wins(tmp_path: Path) -> None:
    manager = RunManager()
    hp = apply_overrides(preset("shakespeare-cpu"), ["run.device='cpu'"])
    results: list[str] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        barrier.wait()
        try:
            manager.create(hp, "contested")
            results.append("created")
        except RunError:
            results.append("refused")

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["created", "refused", "refused", "refused"]


@pytest.mark.slow
def test_two_viewers_see_the_same_state(tmp_path: Path) -> None:
    manager = RunManager()
    info = manager.create_and_launch(tiny_config(write_corpus(tmp_path), "train.num_iterations=100000",
                                                 "run.val_every=0"), "watched")
    deadline = time.monotonic() + 120
    while not any(e["kind"] == "train" for e in read_metrics(info.path / "metrics.jsonl")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    listing = subprocess.run([sys.executable, "-m", "nanogpt_tui", "runs"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60).stdout
    assert "watched" in listing and "running" in listing, listing
    assert manager.get("watched").state == "running"
    manager.stop("watched")
    final = manager.wait("watched", timeout=60)
    listing = subprocess.run([sys.executable, "-m", "nanogpt_tui", "runs"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60).stdout
    assert final.state == "stopped" and "stopped" in listing, listing


class _Payload:
    """Unpickling this would create a marker file: the proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "step": 1, "payload": _Payload(marker)}, crafted,
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="pickled Python objects") as info:
        read_checkpoint_file(crafted)
    assert "--trust-pickle" in info.value.hint
    assert not marker.exists(), "loading a checkpoint ran code from it"


def test_truncated_and_foreign_files_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(100)}, "step": 1}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint_file(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint_file(text)


@pytest.mark.parametrize("override,message", [
    ("train.num_iterations=-1", "train.num_iterations"),
    ("model.vocab_size=70000", "does not fit uint16"),
    ("train.train_seq_len=1000", "multiple of the attention block"),
])
def test_absurd_config_values_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("shakespeare-cpu"), [override])


def test_absurd_tokenizer_files_are_refused(tmp_path: Path, monkeypatch) -> None:
    import engine.data.tokenizer as tokenizer_module

    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("x" * 2000)
    monkeypatch.setattr(tokenizer_module, "MAX_TOKENIZER_CHARS", 1000)
    with pytest.raises(DataError, match="too large for a tokenizer"):
        tokenizer_module.load_tokenizer(folder)
