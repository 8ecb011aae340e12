"""SIGTERM handling: first asks for a save, a later second exits at once, a stuck stop is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import sys, time
    from engine.train.trainer import StopSignal
    stop = StopSignal(debounce_s=float(sys.argv[2]))
    stop.timeout_s = float(sys.argv[1])
    stop.install()
    print("ready", flush=True)
    while True:  # a step that never ends: only the signal handling can end this process
        time.sleep(0.01)
        if stop.requested:
            print("stop requested", flush=True)
            while True:
                time.sleep(0.01)
""")


def _start(tmp_path: Path, timeout_s: float, debounce_s: float = 0.5) -> subprocess.Popen:
    script = tmp_path / "stopper.py"
    script.write_text(SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(timeout_s), str(debounce_s)],
                               stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    assert process.stdout.readline().strip() == "ready"
    return process


def test_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    process = _start(tmp_path, timeout_s=60)
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "stop requested"
    time.sleep(0.7)  # past the debounce that absorbs torchrun's forwarded copy of the first signal
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 128 + signal.SIGTERM
    assert time.monotonic() - sent < 2.0, "a second SIGTERM must end the process at once"


def test_a_duplicate_sigterm_within_the_debounce_is_the_same_stop(tmp_path: Path) -> None:
    # a debounce far longer than any scheduling delay of a busy host between the two signals
    process = _start(tmp_path, timeout_s=60, debounce_s=60)
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "stop requested"
    process.send_signal(signal.SIGTERM)  # after the first was handled, so the kernel cannot merge them
    time.sleep(0.3)
    assert process.poll() is None, "torchrun's forwarded duplicate must not kill a saving worker"
    process.kill()
    process.wait()


def test_a_stuck_stop_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    process = _start(tmp_path, timeout_s=1.0)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 124
    assert time.monotonic() - sent < 5.0


@pytest.mark.slow
def test_a_stop_sent_while_the_run_starts_is_honoured(tmp_path: Path) -> None:
    from engine.runs import RunManager
    from tests.helpers import tiny_config, write_corpus

    manager = RunManager()
    manager.create_and_launch(tiny_config(write_corpus(tmp_path), "train.num_iterations=100000"), "early")
    manager.stop("early")  # before the worker has even imported torch
    final = manager.wait("early", timeout=120)
    assert final.state == "stopped", final
