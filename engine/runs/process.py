"""Detached processes: start one in its own session, tell whether it still lives, signal its group.

Used for training runs and for any other long-lived process the app starts "like a run" (a model
server). Liveness goes through psutil and the process's creation time, so a pid the system has
since given to another program does not count as our process.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
# creation times are read back with a coarse clock on some systems (Linux: clock ticks)
START_TIME_TOLERANCE_S = 1.0
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class Started:
    """A detached process: its pid (also its process group) and its creation time."""

    pid: int
    started_at: float | None


def process_started_at(pid: int) -> float | None:
    """The process's creation time (epoch seconds), None when it does not exist."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return None


def pid_alive(pid: int, started_at: float | None = None) -> bool:
    """True while the process exists, is not a zombie, and (when known) was created at `started_at`."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # a dead child of ours stays a zombie until reaped
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # it exists, owned by someone else; without its start time we cannot say more
    return started_at is None or abs(created - started_at) <= START_TIME_TOLERANCE_S


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment for a child that starts elsewhere (a run folder) but must import this source tree."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra or {}))
    # a source checkout that is not pip-installed (python -m nanogpt_tui) must still find the engine
    entries = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if SOURCE_ROOT not in entries:
        env["PYTHONPATH"] = os.pathsep.join([SOURCE_ROOT, *entries])
    return env


def spawn_detached(command: Sequence[str], *, cwd: Path, log_path: Path, env: Mapping[str, str],
                   block_stop_signals: bool = True) -> Started:
    """Start `command` in a new session (it outlives us and leads its process group), output to log_path.

    With block_stop_signals the child starts with SIGTERM/SIGHUP/SIGINT blocked (the mask is
    inherited), so a stop sent while Python starts waits until the child decides what to do with it.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if block_stop_signals else None
    try:
        with open(log_path, "ab") as log:
            process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=dict(env), cwd=str(cwd))
    finally:
        if blocked is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return Started(process.pid, process_started_at(process.pid))


def signal_group(pid: int, signum: int = signal.SIGTERM) -> bool:
    """Send a signal to the process group `pid` leads; False when the group is gone."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    return True
