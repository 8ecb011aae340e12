"""The checkpoint catalogue: every checkpoint of every run, the newest, and "path | run name | nothing".

The app's Checkpoints screen, its Chat and Evaluate screens and every CLI command that takes a
checkpoint resolve through here, and show `ResolvedCheckpoint.description`, so both faces pick
the same file and say which. Reads sidecars only, never weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import CheckpointError, ConfigError, RunError
from engine.runs.manager import RunManager
from engine.runs.protocol import (
    CHECKPOINTS_DIR, CheckpointEntry, FileProblem, is_run_dir, joined, list_checkpoint_files,
)

# modded-nanogpt writes logs/<run-id>/state_step004000.pt
_ORIGINAL_STEP = re.compile(r"state_step(\d+)\.pt$")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    path: Path
    run: str | None  # the run it belongs to, when it came from the runs folder
    step: int | None
    description: str  # how it was chosen, to show the user


def _newest_in_folder(folder: Path) -> tuple[Path, int | None] | None:
    """The highest-step checkpoint in a folder: ours (with sidecars) first, else original state_step*.pt."""
    ours, _ = list_checkpoint_files(folder)
    if ours:
        return ours[-1].path, ours[-1].step
    originals = [(int(m.group(1)), p) for p in folder.glob("state_step*.pt") if (m := _ORIGINAL_STEP.search(p.name))]
    if originals:
        step, path = max(originals)
        return path, step
    return None


class CheckpointCatalogue:
    """The checkpoints under one runs folder."""

    def __init__(self, runs: RunManager) -> None:
        self.runs = runs
        # sidecars the last listing could not use, one notice per file
        self.problems: list[FileProblem] = []

    def list(self) -> list[CheckpointEntry]:
        """Every complete checkpoint of every run: newest run first, each run's steps in order."""
        self.problems = []
        entries: list[CheckpointEntry] = []
        for info in self.runs.list_runs():  # newest run first
            found, problems = list_checkpoint_files(info.path / CHECKPOINTS_DIR, info.name)
            entries += found
            self.problems += problems
        return entries

    def newest_entry(self) -> CheckpointEntry | None:
        """The newest checkpoint of the newest run that has one of ours, as a listing entry."""
        for info in self.runs.list_runs():
            found, _ = list_checkpoint_files(info.path / CHECKPOINTS_DIR, info.name)
            if found:
                return found[-1]
        return None

    def newest(self) -> ResolvedCheckpoint:
        """The newest checkpoint of the newest run that has one."""
        for info in self.runs.list_runs():
            found = _newest_in_folder(info.path / CHECKPOINTS_DIR)
            if found is not None:
                path, step = found
                return ResolvedCheckpoint(path, info.name, step,
                                          f"the newest checkpoint of the newest run: {info.name}, step {step} ({path})")
        raise CheckpointError(f"no run in {self.runs.root} has a checkpoint yet",
                              hint="train one (nanogpt-tui train), import one (nanogpt-tui import PATH), or give a path")

    def resolve(self, spec: str | Path | None) -> ResolvedCheckpoint:
        """A checkpoint file, a folder (its newest), a run name (its newest), or None/"" (the newest run's)."""
        if spec is None or str(spec) == "":
            return self.newest()
        path = Path(spec).expanduser()
        if path.is_file():
            # a run's own checkpoint keeps its run's name (a fine-tune is named after it, from either face)
            folder = path.parent.parent
            run = folder.name if path.parent.name == CHECKPOINTS_DIR and is_run_dir(folder) else None
            return ResolvedCheckpoint(path, run, None, str(path))
        if path.is_dir():
            return self._from_folder(path)
        try:
            run_dir = self.runs.run_dir(str(spec))
        except ConfigError:
            run_dir = None
        if run_dir is not None and is_run_dir(run_dir):
            found = _newest_in_folder(run_dir / CHECKPOINTS_DIR)
            if found is None:
                _, problems = list_checkpoint_files(run_dir / CHECKPOINTS_DIR)
                if problems:  # the weights may be whole: say which metadata file is wrong, not "wait"
                    raise CheckpointError(f"run {spec!r} has no usable checkpoint: {joined(problems, CHECKPOINTS_DIR)}",
                                          hint="fix or remove that metadata file, or give the .pt path itself")
                raise CheckpointError(f"run {spec!r} has no checkpoint yet", hint="wait for its first checkpoint")
            path, step = found
            return ResolvedCheckpoint(path, run_dir.name, step, f"run {run_dir.name}, step {step} ({path})")
        raise RunError(f"{spec!r} is neither a checkpoint file nor a run",
                       hint="give a .pt path, a run name (list them with: nanogpt-tui runs), or nothing for the newest")

    @staticmethod
    def _from_folder(folder: Path) -> ResolvedCheckpoint:
        checkpoints = folder / CHECKPOINTS_DIR
        found = _newest_in_folder(checkpoints if checkpoints.is_dir() else folder)
        if found is None:
            raise CheckpointError(f"no checkpoint in {folder}",
                                  hint="a run writes checkpoints/step_*.pt; modded-nanogpt writes state_step*.pt")
        path, step = found
        run = folder.name if checkpoints.is_dir() else None
        return ResolvedCheckpoint(path, run, step, f"{path} (newest in {folder})")
