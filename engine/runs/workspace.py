"""The workspace: one data root, its runs and its checkpoints, as both the app and the CLI see them.

Every decision that is not about drawing or parsing is made here once: where data lives, which
checkpoint "newest" means, what a fine-tune plan's defaults are, whether a run or a checkpoint may
be deleted. The app's engine adapter and the CLI commands both call this object.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine import paths
from engine.errors import CheckpointError
from engine.runs.catalogue import CheckpointCatalogue, ResolvedCheckpoint
from engine.runs.manager import RunManager
from engine.runs.process import pid_alive
from engine.runs.protocol import CheckpointEntry, read_run_files

if TYPE_CHECKING:
    from engine.config import FinetuneConfig
    from engine.runs.finetune_plan import FinetunePlan
    from engine.runs.manager import RunInfo


class Workspace:
    """The runs folder `<data root>/runs` and what lives beside it (conversations, datasets)."""

    def __init__(self, data_root: Path | None = None, *, runs: RunManager | None = None) -> None:
        if data_root is None:
            data_root, self.source = paths.data_dir_and_source()
        else:
            self.source = "given"
        self.data_root = Path(data_root)
        self.runs = runs if runs is not None else RunManager(self.data_root / "runs")
        self.checkpoints = CheckpointCatalogue(self.runs)

    @property
    def runs_root(self) -> Path:
        return self.runs.root

    @property
    def conversations_dir(self) -> Path:
        return self.data_root / "conversations"

    @property
    def servers_dir(self) -> Path:
        """Where model servers started by the app keep their records (engine.serve.processes)."""
        return self.data_root / "servers"

    def resolve_checkpoint(self, spec: str | Path | None) -> ResolvedCheckpoint:
        return self.checkpoints.resolve(spec)

    def run_is_alive(self, run_dir: Path) -> bool:
        """The guard before deleting: the run's recorded process still exists (and is the one it started)."""
        status = read_run_files(run_dir).status
        return status.state == "running" and status.pid is not None and pid_alive(status.pid, status.pid_started_at)

    def delete_checkpoint(self, entry: CheckpointEntry) -> None:
        """Remove the weights and the sidecar (sidecar first, so no listing ever shows a half-deleted one)."""
        if self.run_is_alive(entry.path.parent.parent):
            raise CheckpointError(f"run {entry.run} is running and may still resume from {entry.path.name}",
                                  hint="stop the run before deleting its checkpoints")
        try:
            entry.path.with_suffix(".json").unlink(missing_ok=True)
            entry.path.unlink(missing_ok=True)
        except OSError as err:
            raise CheckpointError(f"could not delete {entry.path}: {err.strerror or err}") from err

    # ------------------------------------------------------------------ fine-tuning
    def finetune_defaults(self, parent: str | Path | None) -> FinetuneConfig:
        """The settings a fine-tune of `parent` starts from: the parent config's [finetune]."""
        from engine.runs.finetune_plan import finetune_defaults

        return finetune_defaults(self.resolve_checkpoint(parent).path)

    def plan_finetune(self, parent: str | Path | None, data: str | Path, overrides: Sequence[str] = (), *,
                      name: str | None = None, nproc: int = 1) -> FinetunePlan:
        """Resolve the parent (path | run name | nothing) and plan the run; see engine.runs.finetune_plan."""
        from engine.runs.finetune_plan import plan_finetune

        return plan_finetune(self.resolve_checkpoint(parent), data, list(overrides), name=name, nproc=nproc)

    def launch_finetune(self, plan: FinetunePlan) -> RunInfo:
        """Create the planned run and start it detached; DataError when its data cannot be trained on."""
        from engine.runs.finetune_plan import require_ready

        require_ready(plan)
        info = self.runs.create(plan.hp, plan.name, kind="finetune", nproc=plan.nproc, parent=str(plan.parent.path))
        return self.runs.launch(info.name)
