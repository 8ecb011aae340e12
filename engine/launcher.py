"""Supervisor of one detached run: starts the training command, waits, records how it ended.

RunManager starts this module in a new session, so it leads the run's process group. The training
processes record finished/stopped themselves; when they die without doing so (a crash, a killed
rank, torchrun tearing the group down) this supervisor marks the run failed with the exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.runs.protocol import (
    COMMAND_FILE, LOG_FILE, STATUS_FILE, STOP_REQUEST, TERMINAL_STATES, read_json, update_status,
)


def _last_lines(path: Path, count: int = 5) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line for line in lines[-count:] if line.strip())


def main(argv: list[str] | None = None) -> int:
    # RunManager starts us with these signals blocked, so a stop sent while Python starts waits.
    # Ignoring them (not handling) lets the worker inherit the ignore through exec, so it too
    # survives a stop during its start-up and reads the stop_requested file instead.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    command = json.loads((run_dir / COMMAND_FILE).read_text())["command"]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    while True:
        try:
            exit_code = child.wait()
            break
        except InterruptedError:
            continue
    status = read_json(run_dir / STATUS_FILE)
    if status.get("pid") not in (None, os.getpid()):
        return 0  # the run was launched again after our worker ended: its status is not ours to write
    if status.get("state") not in TERMINAL_STATES and (run_dir / STOP_REQUEST).exists():
        # a worker killed by the stop before it could save (torchrun's workers start unprotected)
        update_status(run_dir, state="stopped", exit_code=exit_code, ended_at=time.time(),
                      message="stopped while starting; the newest checkpoint is unchanged")
    elif status.get("state") not in TERMINAL_STATES:
        reason = f"exit code {exit_code}" if exit_code >= 0 else f"killed by signal {-exit_code}"
        tail = _last_lines(run_dir / LOG_FILE)
        update_status(run_dir, state="failed", exit_code=exit_code, ended_at=time.time(),
                      message=f"training process ended without finishing ({reason})" + (f": {tail}" if tail else ""))
    else:
        update_status(run_dir, exit_code=exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
