"""retain_freed_memory: freed MiB-sized tensors are reused instead of faulted in again.

Every probe runs in a fresh interpreter: mallopt changes the whole process, so calling it inside
pytest would both change the test process and make later calls answer from the first one's result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# allocate, touch and free a 32 MiB tensor 20 times after a warm-up; print what the calls returned
# and the minor page faults per round
_PROBE = """
import json, resource, sys, torch
from engine.train.allocator import retain_freed_memory
answers = [retain_freed_memory() for _ in range(int(sys.argv[1]))]
for _ in range(12):  # glibc settles within the first rounds
    torch.ones(8 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(8 << 20)  # 32 MiB of float32
print(json.dumps(answers), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _probe(calls: int, kernels: str = "1") -> tuple[list[bool], float]:
    env = {**os.environ, "NANOGPT_TUI_CPU_KERNELS": kernels}
    result = subprocess.run([sys.executable, "-c", _PROBE, str(calls)], capture_output=True, text=True,
                            check=True, env=env)
    answers, faults = result.stdout.strip().rsplit(" ", 1)
    return json.loads(answers), float(faults)


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")


def test_retained_memory_is_reused_without_page_faults() -> None:
    (_, default), (answers, retained) = _probe(0), _probe(1)
    assert answers == [True]
    # 32 MiB is 8,192 pages: glibc's default maps them afresh each round (the adaptive threshold
    # stops at 32 MiB), retained memory is reused
    assert default > 4000, f"expected fresh pages each round by default, saw {default:.0f} faults"
    assert retained < 200, f"retained memory still faulted {retained:.0f} times per round"


def test_a_second_call_keeps_the_setting() -> None:
    answers, retained = _probe(2)
    assert answers == [True, True]
    assert retained < 200, f"a second call undid the setting: {retained:.0f} faults per round"


def test_switched_off_with_the_other_cpu_kernels() -> None:
    answers, faults = _probe(1, kernels="0")
    assert answers == [False]
    assert faults > 4000, f"glibc's defaults should be untouched, saw {faults:.0f} faults per round"
