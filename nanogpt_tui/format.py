"""Short, fixed-width texts for numbers the screens show."""

from __future__ import annotations

import time

STATE_STYLES = {
    "running": "bold green",
    "finished": "blue",
    "failed": "bold red",
    "stopped": "yellow",
    "created": "dim",
}


def loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def rate(tokens_per_s: float | None) -> str:
    """Tokens per second with a k/M suffix."""
    if tokens_per_s is None:
        return "—"
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if tokens_per_s >= limit:
            return f"{tokens_per_s / limit:.1f}{suffix}"
    return f"{tokens_per_s:.0f}"


def count(value: float) -> str:
    """A large count with a k/M/B suffix (parameters, tokens)."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def size(num_bytes: float) -> str:
    for limit, suffix in ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if num_bytes >= limit:
            return f"{num_bytes / limit:.1f} {suffix}"
    return f"{num_bytes:.0f} B"


def duration(seconds: float | None) -> str:
    """1h05m, 4m12s, 9s; — when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def started(timestamp: float | None) -> str:
    """Local month-day hour:minute."""
    if timestamp is None:
        return "—"
    try:
        return time.strftime("%m-%d %H:%M", time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):  # a time no clock can show (edited or corrupt file)
        return "—"


def run_duration(started_at: float | None, ended_at: float | None, running: bool, now: float) -> str:
    """How long a run ran (until now while it runs; unknown when it died without an end time)."""
    end = now if running else ended_at
    if started_at is None or end is None:
        return "—"
    return duration(end - started_at)
