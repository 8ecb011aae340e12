"""retain_freed_memory: freed MiB-sized tensors are reused instead of faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.allocator import retain_freed_memory

# allocate, touch and free a 32 MiB tensor 20 times after a warm-up; print the minor page faults per round
_PROBE = """
import resource, sys, torch
from engine.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
for _ in range(12):  # glibc settles within the first rounds
    torch.ones(8 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(8 << 20)  # 32 MiB of float32
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_round(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_retained_memory_is_reused_without_page_faults() -> None:
    default, retained = _faults_per_round("default"), _faults_per_round("retain")
    # 32 MiB is 8,192 pages: glibc's default maps them afresh each round (the adaptive threshold
    # stops at 32 MiB), retained memory is reused
    assert default > 4000, f"expected fresh pages each round by default, saw {default:.0f} faults"
    assert retained < 200, f"retained memory still faulted {retained:.0f} times per round"


def test_calling_twice_is_harmless() -> None:
    assert retain_freed_memory() == retain_freed_memory()
