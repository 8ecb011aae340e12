"""The workspace: the run-folder reader (bad files become notices), process liveness, the checkpoint
catalogue and the one data-root rule that the app and the CLI share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import paths
from engine.config import apply_overrides, preset
from engine.errors import CheckpointError, RunError
from engine.runs import RunManager, Workspace, update_status
from engine.runs.process import pid_alive, process_started_at, signal_group, spawn_detached
from engine.runs.protocol import list_checkpoint_files, read_run_files
from engine.settings import Settings, save_settings


def _hp():
    return apply_overrides(preset("shakespeare-cpu"), ["run.device='cpu'"])


def _sidecar(run_dir: Path, step: int, **meta: object) -> Path:
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    pt = folder / f"step_{step:06d}.pt"
    pt.write_bytes(b"weights")
    pt.with_suffix(".json").write_text(json.dumps({"step": step, **meta}))
    return pt


@pytest.mark.parametrize("content, notice", [
    ("{not json", "status.json: is not valid JSON"),
    ("[1, 2]", "status.json: holds a JSON list"),
    ('{"state": "exploded", "step": "ten"}', "status.json: state: expected one of"),
    ('{"step": -3, "pid": true}', "status.json: step: expected a whole number >= 0"),
    ('{"started_at": "yesterday"}', "status.json: started_at: expected a time"),
    ('{"started_at": 1e300, "pid": 1000000000000}', "status.json: started_at: expected a time"),
    ('{"pid": 1000000000000}', "status.json: pid: expected a whole number"),
])
def test_a_bad_status_file_is_a_notice_on_its_own_run(tmp_path: Path, content: str, notice: str) -> None:
    manager = RunManager(tmp_path)
    manager.create(_hp(), "good")
    manager.create(_hp(), "bad")
    (tmp_path / "bad" / "status.json").write_text(content)
    runs = {run.name: run for run in manager.list_runs()}
    assert set(runs) == {"good", "bad"}, "one bad file must not hide the other runs"
    assert runs["good"].problems == ()
    assert any(p.startswith(notice) for p in runs["bad"].problems), runs["bad"].problems
    assert runs["bad"].state in ("created", "failed")


def test_wrong_fields_fall_back_one_by_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"kind": "pretrain", "nproc": "two", "preset": "tiny"}))
    files = read_run_files(run_dir)
    assert files.meta.preset == "tiny" and files.meta.nproc == 1, "the good field is kept, the bad one defaults"
    assert [str(p) for p in files.problems] == ["run.json: nproc: expected a whole number >= 1, got 'two'"]


def test_a_bad_sidecar_hides_only_its_checkpoint(tmp_path: Path) -> None:
    manager = RunManager(tmp_path)
    manager.create(_hp(), "r")
    good = _sidecar(tmp_path / "r", 10)
    broken = _sidecar(tmp_path / "r", 20)
    broken.with_suffix(".json").write_text('{"step": "twenty"}')
    entries, problems = list_checkpoint_files(tmp_path / "r" / "checkpoints", "r")
    assert [e.path for e in entries] == [good]
    assert [str(p) for p in problems] == ["step_000020.json: step: expected a whole number >= 0, got 'twenty'"]
    catalogue = Workspace(tmp_path.parent, runs=manager).checkpoints
    assert [e.step for e in catalogue.list()] == [10] and len(catalogue.problems) == 1


def test_a_reused_pid_is_not_our_process(tmp_path: Path) -> None:
    me = os.getpid()
    started = process_started_at(me)
    assert started is not None and pid_alive(me, started)
    assert not pid_alive(me, started - 3600), "a process created an hour later under our pid is someone else"
    manager = RunManager(tmp_path)
    manager.create(_hp(), "reused")
    update_status(tmp_path / "reused", state="running", pid=me, pid_started_at=started - 3600)
    assert manager.get("reused").state == "failed"


def test_spawn_detached_leads_its_group_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    started = spawn_detached([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                             cwd=tmp_path, log_path=log, env=os.environ, block_stop_signals=False)
    assert pid_alive(started.pid, started.started_at)
    assert os.getpgid(started.pid) == started.pid, "the child must lead its own process group"
    assert signal_group(started.pid)
    deadline = time.monotonic() + 10
    while pid_alive(started.pid, started.started_at) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(started.pid, started.started_at)
    assert not signal_group(started.pid), "the group is gone once its only process ended"


def test_catalogue_newest_and_resolve(tmp_path: Path) -> None:
    manager = RunManager(tmp_path / "runs")
    manager.create(_hp(), "older")
    time.sleep(0.01)
    manager.create(_hp(), "newer")
    _sidecar(tmp_path / "runs" / "older", 5)
    workspace = Workspace(tmp_path, runs=manager)
    assert workspace.resolve_checkpoint(None).run == "older", "the newest run without checkpoints is skipped"
    newest = _sidecar(tmp_path / "runs" / "newer", 7)
    assert workspace.resolve_checkpoint(None).path == newest
    assert workspace.resolve_checkpoint("older").step == 5
    assert workspace.resolve_checkpoint(str(newest)).path == newest
    assert [e.label for e in workspace.checkpoints.list()] == ["newer @ 7", "older @ 5"]
    with pytest.raises(RunError, match="neither a checkpoint file nor a run"):
        workspace.resolve_checkpoint("ghost")


def test_deleting_a_checkpoint_of_a_live_run_is_refused(tmp_path: Path) -> None:
    manager = RunManager(tmp_path / "runs")
    manager.create(_hp(), "live")
    pt = _sidecar(tmp_path / "runs" / "live", 3)
    update_status(tmp_path / "runs" / "live", state="running", pid=os.getpid(),
                  pid_started_at=process_started_at(os.getpid()))
    workspace = Workspace(tmp_path, runs=manager)
    (entry,) = workspace.checkpoints.list()
    with pytest.raises(CheckpointError, match="is running"):
        workspace.delete_checkpoint(entry)
    update_status(tmp_path / "runs" / "live", state="stopped")
    workspace.delete_checkpoint(entry)
    assert not pt.exists() and not pt.with_suffix(".json").exists()


def test_data_root_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(os.environ["NANOGPT_TUI_HOME"])
    save_settings(Settings(data_dir=str(tmp_path / "chosen")))
    assert paths.data_dir_and_source() == (home / "data", "$NANOGPT_TUI_HOME"), "the environment wins"
    if sys.platform != "linux":
        pytest.skip("the settings file's platform location is only redirected by XDG variables on Linux")
    monkeypatch.delenv("NANOGPT_TUI_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "platform-data"))
    assert Workspace().data_root == tmp_path / "platform-data" / "nanogpt-tui", "no setting: the platform default"
    save_settings(Settings(data_dir=str(tmp_path / "chosen")))
    workspace = Workspace()
    assert (workspace.data_root, workspace.runs_root) == (tmp_path / "chosen", tmp_path / "chosen" / "runs")
    assert "settings.toml" in workspace.source


def test_out_of_memory_while_reading_a_checkpoint_is_not_a_damaged_file(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from engine.checkpoint import read_checkpoint_file
    from engine.errors import DeviceError

    path = tmp_path / "step_000001.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)

    def full(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch, "load", full)
    with pytest.raises(DeviceError, match="out of memory while loading") as caught:
        read_checkpoint_file(path, map_location="cuda")
    assert "truncated" not in caught.value.message

    def cut(*args: object, **kwargs: object) -> None:
        raise RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory")

    monkeypatch.setattr(torch, "load", cut)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint_file(path)


def test_a_run_its_time_budget_ends_records_full_progress(tmp_path: Path) -> None:
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal
    from tests.helpers import tiny_config, write_corpus

    hp = tiny_config(write_corpus(tmp_path), "train.num_iterations=100000", "train.time_budget_s=0.5",
                     "run.val_every=0", "run.checkpoint_every=0", "run.sample_tokens=0")
    manager = RunManager(tmp_path / "runs")
    info = manager.create(hp, "timed")
    build_trainer(info.path, False, StopSignal()).run()
    done = manager.get("timed")
    assert done.state == "finished" and done.ended_by_time and done.fraction == 1.0
    assert done.steps_label == f"{done.step} (time budget)", "the table must not show 212/1000 for a timed run"
    events = [json.loads(line) for line in (info.path / "metrics.jsonl").read_text().splitlines()]
    fractions = [e["progress"] for e in events if e["kind"] == "train"]
    assert fractions and fractions[-1] >= 0.99 and all(f > 1 / 100000 for f in fractions[1:]), fractions
