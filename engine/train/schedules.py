"""What changes over a run: the LR multiplier, Muon's momentum warm-up and the attention window.

Pure functions of the step or of the progress (a fraction in [0, 1], by steps or by time budget),
so the trainer only applies them. `get_lr` and `get_window_size_blocks` are the original's step-based
names (modded-nanogpt); the trainer uses the progress-based forms.
"""

from __future__ import annotations

from engine.config import next_multiple_of_n

# the speedrun's momentum warm-up: Muon starts at 0.85 and reaches the configured momentum after 300 steps
MOMENTUM_WARMUP_START = 0.85
MOMENTUM_WARMUP_STEPS = 300


def muon_momentum(step: int, target: float) -> float:
    """Muon's momentum at `step`: linear from MOMENTUM_WARMUP_START to `target` over MOMENTUM_WARMUP_STEPS."""
    frac = min(step / MOMENTUM_WARMUP_STEPS, 1.0)
    return (1 - frac) * MOMENTUM_WARMUP_START + frac * target


def lr_multiplier(progress: float, cooldown_frac: float = 0.4, final_frac: float = 0.1) -> float:
    """1.0, then linear down to `final_frac` over the last `cooldown_frac` of training (progress in [0, 1])."""
    # clamp: a time-budgeted or resumed run can report progress a hair outside [0, 1]
    x = min(max(progress, 0.0), 1.0)
    if cooldown_frac <= 0.0 or x < 1.0 - cooldown_frac:
        return 1.0
    w = (1.0 - x) / cooldown_frac
    return w * 1.0 + (1.0 - w) * final_frac


def get_lr(step: int, num_iterations: int, cooldown_frac: float = 0.4) -> float:
    """The original's step-based schedule: lr_multiplier(step / num_iterations)."""
    return lr_multiplier(step / num_iterations, cooldown_frac)


def window_blocks_for_progress(progress: float, max_window_tokens: int = 1728, block_size: int = 128) -> int:
    """Long sliding window in attention blocks: max_window_tokens·progress rounded up to a block (>= 1)."""
    x = min(max(progress, 0.0), 1.0)
    return next_multiple_of_n(max_window_tokens * x, n=block_size) // block_size


def get_window_size_blocks(
    step: int, num_iterations: int, max_window_tokens: int = 1728, block_size: int = 128
) -> int:
    """The original's window schedule by step: 1 block at step 0, 14 blocks (1792 tokens) at the end."""
    return window_blocks_for_progress(step / num_iterations, max_window_tokens, block_size)
