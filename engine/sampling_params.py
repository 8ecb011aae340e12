"""How tokens are picked, and the default values both faces start from (no torch import).

The app's sliders, `nanogpt-tui chat|generate|eval` flags and the engine's generator all take
their defaults from `SamplingParams()`, so a reply is sampled the same way wherever it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.limits import SAMPLING_LIMITS, check_number


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens. temperature 0 = greedy; top_k 0 and top_p 1 = no filtering."""

    temperature: float = 0.8
    top_k: int = 50
    # a small nucleus cut: the tail of a small model's distribution is mostly noise
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int = 0
    stop_strings: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    # > 1 makes tokens already in the context less likely (CTRL-style: positive logits divided)
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value (engine.limits: NaN and infinities never pass)."""
        for name, limit in SAMPLING_LIMITS.items():
            check_number(name.replace("_", "-"), getattr(self, name), limit)
        if any(not stop for stop in self.stop_strings):
            raise ConfigError("a stop string is empty", hint="remove it, or give at least one character")
