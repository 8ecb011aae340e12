"""Fixtures for the TUI tests: fake run directories written here, and an engine that never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable

from engine.config import preset, save_toml
from engine.runs import RunInfo, RunManager, update_status
from nanogpt_tui.app import LocalEngine, NanoGPTApp
from engine.settings import Settings

# a fixed "now" for snapshots: 2025-01-02 12:00 UTC
FIXED_NOW = 1735819200.0


class FakeManager(RunManager):
    """Starting a process is faked: launch records the call and marks the run running under this process."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.launched: list[tuple[str, bool]] = []

    def launch(self, name: str, *, resume: bool = False) -> RunInfo:
        self.launched.append((name, resume))
        update_status(self.run_dir(name), state="running", pid=os.getpid(), started_at=time.time(), ended_at=None)
        return self.get(name)


class FakeEngine(LocalEngine):
    """The app's engine over the test's folder, with device detection, measuring and launching faked."""

    def new_manager(self) -> FakeManager:
        return FakeManager(self.root)

    @property
    def launched(self) -> list[tuple[str, bool]]:
        manager = self.manager
        assert isinstance(manager, FakeManager)
        return manager.launched

    def detect_devices(self, device: str) -> tuple[str, int]:
        return "cpu", 2

    def measure_throughput(self, device: str) -> float:
        return 2e10


def write_run(root: Path, name: str, *, state: str = "finished", steps: int = 0, total: int = 100,
              val_every: int = 0, pid: int | None = None, created_at: float = FIXED_NOW - 3600,
              started_at: float | None = FIXED_NOW - 3000, ended_at: float | None = FIXED_NOW - 600,
              preset_name: str = "shakespeare-cpu", message: str = "", log: str = "",
              sample: str = "") -> Path:
    """A run directory as the engine leaves it: config.toml, run.json, status.json, metrics.jsonl, train.log."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    save_toml(preset(preset_name), run_dir / "config.toml")
    (run_dir / "run.json").write_text(json.dumps({
        "name": name, "kind": "pretrain", "preset": preset_name, "created_at": created_at, "nproc": 1,
        "nnodes": 1, "command": [], "parent": None, "total_steps": total,
    }))
    (run_dir / "status.json").write_text(json.dumps({
        "state": state, "pid": pid, "started_at": started_at, "ended_at": ended_at, "exit_code": None,
        "step": steps, "total_steps": total, "message": message,
    }))
    lines = [train_line(step) for step in range(1, steps + 1)]
    if val_every:
        lines += [val_line(step) for step in range(val_every, steps + 1, val_every)]
    if sample:
        lines.append(json.dumps({"t": FIXED_NOW, "step": steps, "kind": "sample", "text": sample}))
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in sorted(lines, key=_step_of)))
    (run_dir / "train.log").write_text(log)
    return run_dir


def _step_of(line: str) -> int:
    return json.loads(line)["step"]


def train_line(step: int, tokens_per_step: int = 4096) -> str:
    loss = 8.0 * 0.97**step + 1.5
    return json.dumps({"t": FIXED_NOW + step, "step": step, "kind": "train", "loss": round(loss, 4),
                       "lr": 1.0, "tokens": step * tokens_per_step, "tokens_per_s": 20000.0 + 10 * (step % 7),
                       "step_time_ms": 200.0})


def val_line(step: int, tokens_per_step: int = 4096) -> str:
    return json.dumps({"t": FIXED_NOW + step, "step": step, "kind": "val", "val_loss": round(8.0 * 0.97**step + 1.7, 4),
                       "val_bpb": 1.1, "tokens": step * tokens_per_step})


@pytest.fixture
def runs_root(isolated_home: Path) -> Path:
    root = isolated_home / "data" / "runs"
    root.mkdir(parents=True)
    return root


@pytest.fixture
def engine(runs_root: Path) -> FakeEngine:
    return FakeEngine(runs_root)


@pytest.fixture
def make_app(engine: FakeEngine):
    def make(**kwargs: Any) -> NanoGPTApp:
        app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW, **kwargs)
        # the tabs' underline slides into place; snapshots must not catch it halfway
        app.animation_level = "none"
        return app

    return make


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Times print the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def rows_by_header(table: DataTable[Any]) -> list[dict[str, str]]:
    """A table's rows in the order shown, each row's cells by the column header the user sees."""
    headers = [str(column.label) for column in table.columns.values()]
    return [dict(zip(headers, map(str, table.get_row(key)), strict=True)) for key in table.rows]


def form_errors(screen: Screen[Any]) -> dict[str, str]:
    """The errors a form shows (its `.field-error` lines that say something), by the line's id."""
    return {str(line.id): text for line in screen.query(".field-error") if (text := str(line.render()))}


def record_notifications(app: NanoGPTApp) -> list[tuple[str, str]]:
    """Every notification the app shows from now on, as (message, severity); they still show."""
    shown: list[tuple[str, str]] = []
    notify = app.notify

    def recording(message: str, **kwargs: Any) -> None:
        shown.append((message, str(kwargs.get("severity", "information"))))
        notify(message, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    return shown


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 15.0,
                   what: str = "condition") -> None:
    """Let the app run until `condition()` holds; the workers poll files, so there is no message to await."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)
    # let a screen that just appeared finish mounting before the test goes on (or closes the app)
    await pilot.pause()


FAKE_TRAINER = """
import signal, sys, time
from pathlib import Path
from engine.runs import update_status

run_dir = Path(sys.argv[1])

def stop(signum, frame):
    update_status(run_dir, state="stopped", ended_at=time.time(), message="stopped on request")
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def fake_trainer():
    """Starts a process that behaves like a run towards SIGTERM (records "stopped"), as the run's pid."""
    processes: list[subprocess.Popen[str]] = []

    def start(run_dir: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", FAKE_TRAINER, str(run_dir)], stdout=subprocess.PIPE,
                                   text=True, start_new_session=True)
        processes.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready", "fake trainer did not start"
        update_status(run_dir, state="running", pid=process.pid, ended_at=None)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
