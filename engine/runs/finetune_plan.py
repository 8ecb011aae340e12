"""One fine-tune plan for both faces: parent + data + overrides -> the run's config, name and size.

`nanogpt-tui finetune` and the app's fine-tune form both call `plan_finetune`, so the same inputs
give the same config.toml. Defaults come from the parent's own config (its `[finetune]` section),
never from the global FinetuneConfig(). Imports torch (the parent's tokenizer and weights are read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import FinetuneConfig, Hyperparameters, preset
from engine.errors import DataError

if TYPE_CHECKING:
    from engine.data.conversations import ConversationReport
    from engine.train.finetune import FinetuneData, Parent
    from engine.runs.catalogue import ResolvedCheckpoint

# the base of an original modded-nanogpt checkpoint, which carries no config of its own
ORIGINAL_BASE_PRESET = "speedrun-124m"


@dataclass(frozen=True)
class FinetunePlan:
    """Everything a fine-tune launch needs, checked; `data` is None when the conversations cannot be trained on."""

    parent: ResolvedCheckpoint
    original: bool  # an original modded-nanogpt checkpoint (GPT-2 tokenizer, speedrun defaults)
    hp: Hyperparameters
    report: ConversationReport
    data: FinetuneData | None
    name: str
    nproc: int

    @property
    def ready(self) -> bool:
        return self.data is not None

    def summary(self) -> str:
        assert self.data is not None, "a plan without usable data has no steps"
        t, ft = self.hp.train, self.hp.finetune
        return (f"{t.num_iterations} steps = {ft.epochs} epoch(s) of {len(self.data.dataset.train)} rows, "
                f"{t.batch_size} rows per step, {ft.optimizer} lr {ft.lr:g}")


def parent_finetune_defaults(parent: Parent) -> FinetuneConfig:
    """The [finetune] values a plan starts from: the parent config's (speedrun's for an original checkpoint)."""
    return (parent.hp or preset(ORIGINAL_BASE_PRESET)).finetune


def finetune_defaults(checkpoint: Path) -> FinetuneConfig:
    """What the form shows before the user changes anything (reads the parent checkpoint)."""
    from engine.train.finetune import read_parent

    return parent_finetune_defaults(read_parent(checkpoint))


def plan_finetune(parent: ResolvedCheckpoint, data: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                  name: str | None = None, nproc: int = 1) -> FinetunePlan:
    """Read the parent and the conversations and size the run; invalid data gives a plan that is not ready."""
    from engine.data.conversations import read_conversations
    from engine.data.tokenizer import tokenizer_from_payload
    from engine.data.examples import resolve_data
    from engine.train.finetune import finetune_hyperparameters, load_finetune_data, plan_steps, read_parent

    loaded = read_parent(parent.path)
    overrides = list(overrides)
    hp = finetune_hyperparameters(loaded, str(resolve_data(data)), overrides)
    report = read_conversations(hp.finetune.data, max_file_mb=hp.finetune.max_file_mb)
    usable = bool(report.conversations) and (hp.finetune.skip_invalid or not report.issues)
    prepared = load_finetune_data(hp, tokenizer_from_payload(loaded.tokenizer), report) if usable else None
    if prepared is not None:
        # validation once per epoch, unless the user chose the interval
        hp = plan_steps(hp, len(prepared.dataset.train),
                        validate_each_epoch=not any(o.startswith("run.val_every") for o in overrides))
    base = parent.run or hp.preset
    name = name or f"{base}-ft-{time.strftime('%Y%m%d-%H%M%S')}"
    return FinetunePlan(parent, loaded.hp is None, hp, report, prepared, name, nproc)


def require_ready(plan: FinetunePlan) -> FinetuneData:
    """The plan's data, or the DataError that says why the conversations cannot be trained on."""
    if plan.data is None:
        from engine.data.conversations import require_valid

        require_valid(plan.report, plan.hp.finetune.data, skip_invalid=plan.hp.finetune.skip_invalid)
        raise DataError(f"{plan.hp.finetune.data} cannot be trained on")  # require_valid raised already
    return plan.data
