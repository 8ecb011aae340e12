"""Training: the loop shared by pretraining and fine-tuning, and what it is built from.

`trainer.py` (Trainer, the loop), `task.py` (TrainingTask, what a run trains on, and PretrainTask),
`entry.py` (run_entry_point: a trainer as a process's job, failures as a status), `pretraining.py` and
`finetune.py` (what each kind of run reads; FinetuneTask; `python -m engine.pretraining` /
`engine.finetune` are their entry points),
`muon.py` (Muon, Newton–Schulz, setup_optimizers), `schedules.py` (LR, Muon momentum warm-up, attention
window), `device.py` (capabilities and the fast paths chosen from them), `environment.py`
(environment.json), `failures.py` (OOM and compile failures as errors with a hint), `distributed.py`,
`stopping.py` (SIGTERM), `allocator.py` (glibc keeping freed memory), `train_samples.py` (the samples
written to metrics.jsonl during a run).

The original's public names are importable from here; each is loaded on first use, so importing this
package (the supervisor does, for `stopping`) costs neither torch nor the config.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Trainer": "engine.train.trainer", "run_entry_point": "engine.train.entry",
    "Muon": "engine.train.muon", "zeropower_via_newtonschulz5": "engine.train.muon",
    "setup_optimizers": "engine.train.muon",
    "get_lr": "engine.train.schedules", "get_window_size_blocks": "engine.train.schedules",
    "lr_multiplier": "engine.train.schedules", "window_blocks_for_progress": "engine.train.schedules",
    "muon_momentum": "engine.train.schedules",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.train' has no attribute {name!r}")
