"""The workspace package: the run-folder protocol, the process helpers, runs, checkpoints and plans.

`protocol` and `process` are light (no config, no torch) and are what low-level modules (the
trainer, the supervisor, checkpoint saving) import; the rest is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.runs.process import pid_alive
from engine.runs.protocol import STOP_REQUEST, TERMINAL_STATES, read_json, update_status, write_json

_LAZY = {
    "RunManager": "engine.runs.manager", "RunInfo": "engine.runs.manager",
    "available_devices": "engine.runs.manager", "Workspace": "engine.runs.workspace",
    "CheckpointCatalogue": "engine.runs.catalogue", "ResolvedCheckpoint": "engine.runs.catalogue",
}

__all__ = ["STOP_REQUEST", "TERMINAL_STATES", "pid_alive", "read_json", "update_status", "write_json", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.runs' has no attribute {name!r}")
