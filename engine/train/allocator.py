"""Keep freed host memory in the process, so CPU training steps stop paying for page faults.

glibc serves blocks above its mmap threshold (128 KiB at start, adapting up to 32 MiB) with fresh
mmap'd pages and gives them back on free. A CPU training step allocates and frees activations of
several MiB each (the logits of a 32 × 128-token batch over a 2,048-token vocabulary are 32 MiB),
so every step faults in the same memory again: measured on 2 cores, ~100,000 minor faults and
~20 % of the step time. Raising the mmap and trim thresholds lets freed blocks be reused instead.
Linux/glibc only; elsewhere this does nothing (other allocators cache large blocks themselves).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from engine.model.cpu_kernels import enabled

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# blocks up to this size come from the reusable heap; freed heap memory up to this size is kept
RETAIN_BYTES = 1 << 30

_applied = False


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if glibc accepted both.

    The cost: memory freed by the process is not returned to the system until it exits, so the
    resident size stays at its peak, which a training process reaches in its first steps anyway.
    Off with the other CPU kernels (NANOGPT_TUI_CPU_KERNELS=0): then glibc keeps its defaults.
    """
    global _applied
    if _applied:
        return True
    if not enabled() or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, RETAIN_BYTES))
    return _applied
