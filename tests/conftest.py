"""Shared fixtures: every test gets its own NANOGPT_TUI_HOME so no user data is touched."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# before anything imports torch: tiny models are fastest single-threaded, and 2 cores are shared
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "nanogpt_home"
    home.mkdir()
    monkeypatch.setenv("NANOGPT_TUI_HOME", str(home))
    # tiny test models run fastest on one thread, and tests that start training processes
    # (2 ranks, or a run beside the test process) would otherwise oversubscribe 2 cores,
    # where OpenMP's spin-waiting makes steps 50x slower
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield home
    _kill_processes_under(tmp_path)


def _kill_processes_under(folder: Path) -> None:
    """SIGKILL what a test left running from its folder (a run it launched, a CLI it started).

    Runs live in their own sessions on purpose, so a test that fails before stopping one would leave a
    100000-step run training beside every later test, on 2 cores.
    """
    if not Path("/proc").is_dir():
        return
    marker = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:  # gone already, or not ours to read
            continue


@pytest.fixture(autouse=True)
def restore_stop_signal_handlers():
    """Puts SIGTERM/SIGINT/SIGHUP back after each test: an in-process run_entry_point installs StopSignal,
    which ignores SIGHUP, and every process a later test spawns would inherit the ignore (the SIGHUP test's
    CLI then never exits)."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
