"""Process-group shutdown: what a finished run leaves in reference cycles is freed before the groups go.

Freed later, during interpreter finalization, gloo's worker threads can abort a rank that finished
("terminate called without an active exception"), which failed a 4-rank test in 1 of 5 whole-suite runs.
"""

from __future__ import annotations

import gc
import weakref

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
