"""RunManager without training: names, duplicates, states read from files, dead pids, deletion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import apply_overrides, preset
from engine.errors import ConfigError, DeviceError, RunError
from engine.runs import RunManager, update_status


def _hp():
    return apply_overrides(preset("shakespeare-cpu"), ["run.device='cpu'"])


def test_create_writes_the_run_directory(tmp_path: Path) -> None:
    manager = RunManager(tmp_path)
    info = manager.create(_hp(), "first")
    assert info.state == "created" and info.kind == "pretrain" and info.preset == "shakespeare-cpu"
    for name in ("config.toml", "run.json", "status.json"):
        assert (tmp_path / "first" / name).exists(), f"{name} missing from a new run directory"
    assert [r.name for r in manager.list_runs()] == ["first"]


def test_two_runs_with_one_name_are_refused(tmp_path: Path) -> None:
    manager = RunManager(tmp_path)
    manager.create(_hp(), "same")
    with pytest.raises(RunError, match="already exists"):
        manager.create(_hp(), "same")


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "with space", "x" * 101, "tab\there", ""])
def test_hostile_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid run name"):
        RunManager(tmp_path).create(_hp(), name or "\x00")


def test_nproc_larger_than_devices(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="more than the"):
        RunManager(tmp_path).create(_hp(), "big", nproc=10_000)


def test_missing_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no run named 'ghost'"):
        RunManager(tmp_path).get("ghost")


def test_running_run_with_dead_pid_shows_failed(tmp_path: Path) -> None:
    manager = RunManager(tmp_path)
    manager.create(_hp(), "orphan")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    update_status(tmp_path / "orphan", state="running", pid=dead.pid)
    info = manager.get("orphan")
    assert info.state == "failed", "a run whose process is gone must not show as running forever"
    assert "gone" in info.message


def test_latest_losses_come_from_metrics(tmp_path: Path) -> None:
    manager = RunManager(tmp_path)
    manager.create(_hp(), "m")
    lines = [{"t": 1, "step": 5, "kind": "train", "loss": 2.5, "tokens_per_s": 100.0},
             {"t": 2, "step": 5, "kind": "val", "val_loss": 2.7}]
    (tmp_path / "m" / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"torn')
    info = manager.get("m")
    assert (info.step, info.last_loss, info.last_val_loss, info.tokens_per_s) == (5, 2.5, 2.7, 100.0)


def test_stop_and_delete_rules(tmp_path: Path) -> None:
    manager = RunManager(tmp_path)
    manager.create(_hp(), "idle")
    with pytest.raises(RunError, match="not running"):
        manager.stop("idle")
    manager.delete("idle")
    assert manager.list_runs() == []


def test_torchrun_command_shapes(tmp_path: Path) -> None:
    manager = RunManager(tmp_path)
    manager.create(_hp(), "one")
    assert manager.torchrun_command("one")[1:3] == ["-m", "engine.pretraining"]
    manager.create(_hp(), "two", nproc=2)
    command = manager.torchrun_command("two")
    assert "torch.distributed.run" in command and "--nproc-per-node=2" in command and "--standalone" in command
    manager.create(_hp(), "multi", nproc=1, nnodes=2, rdzv_endpoint="10.0.0.1:29500")
    command = manager.torchrun_command("multi", node_rank=1)
    assert "--nnodes=2" in command and "--node-rank=1" in command and "--rdzv-endpoint=10.0.0.1:29500" in command


def test_launch_lets_the_children_find_the_engine_from_a_source_checkout(tmp_path: Path, monkeypatch) -> None:
    # the supervisor starts in the run directory; without the source root on its path an
    # uninstalled checkout (python -m nanogpt_tui) would fail with "No module named 'engine'"
    seen: dict = {}

    class FakePopen:
        pid = 999_999

        def __init__(self, command, **kwargs) -> None:
            seen.update(kwargs)

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    manager = RunManager(tmp_path)
    manager.create(_hp(), "src")
    manager.launch("src")
    entries = seen["env"]["PYTHONPATH"].split(":")
    source_root = Path(__file__).resolve().parents[2]
    assert Path(entries[0]) == source_root and "/somewhere/else" in entries
    assert seen["cwd"] == str(tmp_path / "src")
