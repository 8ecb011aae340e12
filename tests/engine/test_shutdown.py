"""Process-group shutdown: what a finished run leaves in reference cycles is freed before the groups go,
and a rank of a multi-process run leaves without interpreter finalization.

Freed later, during interpreter finalization, gloo's worker threads can abort a rank that finished
("terminate called without an active exception"), which failed a 4-rank test in 1 of 5 whole-suite runs.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

from engine.train import distributed
from engine.train.distributed import DistContext, shutdown


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_cycles_are_collected_before_the_process_group_is_destroyed(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.disable()  # so only shutdown() can collect the cycle
    try:
        leftover = _Cyclic()
        alive = weakref.ref(leftover)
        del leftover
        seen: list[bool] = []
        monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
        monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: seen.append(alive() is not None))
        shutdown(DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu")))
    finally:
        gc.enable()
    assert seen == [False], "the cycle was still alive when the process group was destroyed"


def test_a_single_process_has_nothing_to_shut_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: pytest.fail("no group to destroy"))
    shutdown(DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))


_LEAVE = """
import atexit, logging, sys
from engine.train.distributed import exit_worker
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
atexit.register(lambda: print("finalized", flush=True))
logging.getLogger("run").info("last log line")
sys.stdout.write("last metrics line, unflushed")  # a pipe is block-buffered: only a flush sends it
exit_worker(3)
"""


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_a_rank_leaves_without_finalization_and_loses_no_output(world_size: str) -> None:
    env = {**os.environ, "WORLD_SIZE": world_size, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PYTHONUNBUFFERED", None)  # buffered, as a rank's stdout into torchrun's pipe is by default
    result = subprocess.run([sys.executable, "-c", _LEAVE], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "last metrics line, unflushed" in result.stdout and "last log line" in result.stdout, result.stdout
    # one process: a normal exit; a rank of several: past the interpreter's teardown, where gloo can abort it
    assert ("finalized" in result.stdout) == (world_size == "1"), result.stdout
