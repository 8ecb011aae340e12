"""argparse types for numeric options: each parses and checks through engine.limits, like the config does."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from engine.limits import FIELD_LIMITS, OPTION_LIMITS, SAMPLING_LIMITS


def number(name: str) -> Callable[[str], int | float]:
    """A `type=` for the option called `name` in OPTION_LIMITS or SAMPLING_LIMITS, or for a config field."""
    limit = OPTION_LIMITS.get(name) or SAMPLING_LIMITS.get(name) or FIELD_LIMITS[name]

    def parse(text: str) -> int | float:
        try:
            value: int | float = int(text) if limit.integer else float(text)
        except ValueError:
            kind = "an integer" if limit.integer else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        problem = limit.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem + (f" ({limit.hint})" if limit.hint else ""))
        return value

    parse.__name__ = name  # argparse names the type in its own messages
    return parse
