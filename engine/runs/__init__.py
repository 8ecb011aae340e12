"""The workspace package: the run-folder protocol, the process helpers, runs, checkpoints and plans.

`protocol` and `process` are light (no config, no torch) and are what low-level modules (the
trainer, the supervisor, checkpoint saving) import; the rest is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# every name is loaded on first use: the app's first frame imports this package (for the protocol's
# records) and must not pay for psutil, the config or torch
_LAZY = {
    "pid_alive": "engine.runs.process",
    "STOP_REQUEST": "engine.runs.protocol", "TERMINAL_STATES": "engine.runs.protocol",
    "read_json": "engine.runs.protocol", "update_status": "engine.runs.protocol", "write_json": "engine.runs.protocol",
    "RunManager": "engine.runs.manager", "RunInfo": "engine.runs.manager",
    "available_devices": "engine.runs.manager", "Workspace": "engine.runs.workspace",
    "CheckpointCatalogue": "engine.runs.catalogue", "ResolvedCheckpoint": "engine.runs.catalogue",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.runs' has no attribute {name!r}")
