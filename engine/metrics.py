"""metrics.jsonl: one JSON object per line, appended and flushed by rank 0, read incrementally.

Readers must survive a crash mid-write: a torn last line is held back until it is completed,
and lines that are not JSON objects with a known `kind` are skipped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

KINDS = frozenset({"train", "val", "sample", "checkpoint", "status"})


class MetricsWriter:
    """Appends events; each line is written with one write() and flushed so readers see whole lines."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = open(self.path, "a", encoding="utf-8")
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        # a previous crash may have left a half line; start ours on a fresh line so both parse
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    self._file.write("\n")
                    self._file.flush()

    def write(self, kind: str, step: int, **fields: Any) -> dict[str, Any]:
        event = {"t": round(time.time(), 3), "step": step, "kind": kind, **fields}
        self._file.write(json.dumps(event, allow_nan=False, default=_json_default) + "\n")
        self._file.flush()
        return event

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _json_default(value: Any) -> Any:
    # tensors and numpy scalars reach here when a caller forgets .item(); keep the line valid
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_line(line: str) -> dict[str, Any] | None:
    """The event on one line, or None for a line that is torn, not an object, or of unknown kind."""
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or event.get("kind") not in KINDS or not _is_int(event.get("step")):
        return None
    # a hand-edited or foreign line: a known field of the wrong type is dropped (readers then see it absent),
    # and an event without the field that makes it one (a train line's loss) is skipped like a torn line
    for key in [k for k, check in _FIELD_CHECKS.items() if k in event and not check(event[k])]:
        del event[key]
    return event if all(key in event for key in _REQUIRED.get(event["kind"], ())) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_float(value: Any) -> bool:
    # NaN and infinity stay: a diverged run writes them, and the reader should see that
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "t": _is_float, "loss": _is_float, "lr": _is_float, "tokens": _is_int, "tokens_per_s": _is_float,
    "step_time_ms": _is_float, "val_loss": _is_float, "val_bpb": _is_float, "progress": _is_float,
    "text": _is_str, "path": _is_str, "state": _is_str, "message": _is_str,
}
_REQUIRED = {"train": ("loss",), "val": ("val_loss",), "sample": ("text",), "checkpoint": ("path",)}


class MetricsReader:
    """Reads only what was appended since the last call; never re-reads the whole file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._pending = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self._offset += len(chunk)
        data = self._pending + chunk
        lines = data.split(b"\n")
        # the last element is b"" after a complete line, or a torn line still being written
        self._pending = lines.pop()
        events = []
        for raw in lines:
            event = parse_line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return MetricsReader(path).read_new()


def last_of_kind(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    for event in reversed(events):
        if event["kind"] == kind:
            return event
    return None
