"""One switch for the hand-written CPU training kernels (norms, ReLU² MLP, soft-capped loss, allocator).

Each kernel module dispatches for itself: its public function takes the hand-written path when
`applies(x)` and the plain autograd maths otherwise, so `model.py` reads as one path. The kernels
apply only to CPU fp32 activations that need gradients (training); generation, evaluation, bf16 and
CUDA always take the plain maths, which torch.compile fuses on a GPU.

Turn them all off with NANOGPT_TUI_CPU_KERNELS=0 (read at call time, so it reaches torchrun's
workers through the environment) or, in-process, with `cpu_kernels(False)`. Off is the reference
when a kernel is suspected of a wrong gradient: a test holds the whole model to the same loss and
gradients either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

ENV_VAR = "NANOGPT_TUI_CPU_KERNELS"
_OFF_VALUES = {"0", "off", "false", "no"}

# set by `cpu_kernels(...)`; None: follow the environment
_override: bool | None = None


def enabled() -> bool:
    """Whether the hand-written CPU kernels may be used at all (the switch, not the tensor)."""
    if _override is not None:
        return _override
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF_VALUES


def applies(x: Tensor) -> bool:
    """Whether x is a CPU fp32 activation that needs gradients and the kernels are switched on."""
    # the tensor checks come first: on CUDA or in bf16 the answer never depends on the switch,
    # so a compiled GPU graph never reads the environment
    return (x.device.type == "cpu" and x.dtype == torch.float32 and torch.is_grad_enabled()
            and x.requires_grad and enabled())


@contextmanager
def cpu_kernels(on: bool) -> Iterator[None]:
    """Force the kernels on or off inside the block (tests, benchmarks); restores the previous choice."""
    global _override
    previous, _override = _override, on
    try:
        yield
    finally:
        _override = previous
