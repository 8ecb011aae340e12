"""Disconnects and rank failures, with real processes: runs outlive terminals; a dead rank fails the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.checkpoint import latest_checkpoint, read_checkpoint_file
from engine.metrics import read_metrics
from engine.runs import RunManager, pid_alive
from tests.helpers import tiny_config, write_corpus

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _trained_steps(run_dir: Path) -> int:
    return sum(1 for e in read_metrics(run_dir / "metrics.jsonl") if e["kind"] == "train")


@pytest.mark.slow
def test_sighup_to_the_attached_cli_leaves_the_run_training(tmp_path: Path, isolated_home: Path) -> None:
    corpus = write_corpus(tmp_path)
    config = tmp_path / "tiny.toml"
    from engine.config import save_toml

    save_toml(tiny_config(corpus, "train.num_iterations=100000", "run.val_every=0", "run.checkpoint_every=20"), config)
    # the CLI in its own session stands in for a terminal that an SSH disconnect hangs up. It starts with
    # SIGHUP's default action, as a shell in a terminal gives it: pytest run under nohup ignores SIGHUP,
    # and an ignored signal stays ignored through fork and exec.
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        cli = subprocess.Popen([sys.executable, "-m", "nanogpt_tui", "train", "--config", str(config), "--name", "hup"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finally:
        signal.signal(signal.SIGHUP, previous)
    manager = RunManager()
    _wait_for(lambda: manager.run_dir("hup").exists() and _trained_steps(manager.run_dir("hup")) > 0, 120,
              "the attached run to train")
    os.killpg(cli.pid, signal.SIGHUP)
    cli.wait(timeout=30)
    steps_at_hangup = _trained_steps(manager.run_dir("hup"))
    _wait_for(lambda: _trained_steps(manager.run_dir("hup")) > steps_at_hangup + 5, 60, "training after the hang-up")
    assert manager.get("hup").state == "running", "a hang-up of the terminal must not touch the run"
    manager.stop("hup")
    assert manager.wait("hup", timeout=60).state == "stopped"


@pytest.mark.slow
def test_detached_cli_run_survives_its_terminal(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path)
    config = tmp_path / "tiny.toml"
    from engine.config import save_toml

    save_toml(tiny_config(corpus, "train.num_iterations=40", "run.val_every=0"), config)
    result = subprocess.run([sys.executable, "-m", "nanogpt_tui", "train", "--config", str(config), "--name", "bg",
                             "--detach"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "keeps running in the background" in result.stdout
    final = RunManager().wait("bg", timeout=120)
    assert final.state == "finished" and final.step == 40


def _rank_pid(run_dir: Path, rank: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"engine.pretraining" in cmdline and str(run_dir).encode() in b" ".join(cmdline) \
                and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.slow
def test_a_dead_rank_fails_the_run_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    manager = RunManager()
    corpus = write_corpus(tmp_path)
    info = manager.create_and_launch(tiny_config(corpus, "train.num_iterations=100000", "run.val_every=0",
                                                 "run.checkpoint_every=3"), "rankfail", nproc=2)
    _wait_for(lambda: latest_checkpoint(info.path / "checkpoints") is not None, 180, "a first checkpoint")
    pid = _rank_pid(info.path.resolve(), 1)
    assert pid is not None, "could not find rank 1's process"
    os.kill(pid, signal.SIGKILL)
    final = manager.wait("rankfail", timeout=180)
    _wait_for(lambda: not pid_alive(final.pid), 120, "torchrun and the supervisor to exit")
    log = (info.path / "train.log").read_text()
    assert final.state == "failed", f"{final}\n{log[-2000:]}"
    assert "Signal 9 (SIGKILL)" in log or "exitcode  : -9" in log, f"the failing rank is not named:\n{log[-2000:]}"
    checkpoint = latest_checkpoint(info.path / "checkpoints")
    assert read_checkpoint_file(checkpoint.path)["step"] == checkpoint.step
