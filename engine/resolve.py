"""Choose a checkpoint without editing code: a path, a run name, or nothing (the newest run's newest).

The CLI and the TUI both call `resolve_checkpoint`, and show `ResolvedCheckpoint.description` so the
user always sees which file was picked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.checkpoint import list_checkpoints
from engine.errors import CheckpointError, ConfigError, RunError

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
    ours = list_checkpoints(folder)
    if ours:
        return ours[-1].path, ours[-1].step
    originals = [(int(m.group(1)), p) for p in folder.glob("state_step*.pt") if (m := _ORIGINAL_STEP.search(p.name))]
    if originals:
        step, path = max(originals)
        return path, step
    return None


def _from_folder(folder: Path) -> ResolvedCheckpoint:
    checkpoints = folder / "checkpoints"
    found = _newest_in_folder(checkpoints if checkpoints.is_dir() else folder)
    if found is None:
        raise CheckpointError(f"no checkpoint in {folder}",
                              hint="a run writes checkpoints/step_*.pt; modded-nanogpt writes state_step*.pt")
    path, step = found
    run = folder.name if checkpoints.is_dir() else None
    return ResolvedCheckpoint(path, run, step, f"{path} (newest in {folder})")


def resolve_checkpoint(spec: str | Path | None, runs_root: Path | None = None) -> ResolvedCheckpoint:
    """A checkpoint file, a folder (its newest checkpoint), a run name (its newest), or None/"" (the newest run's)."""
    from engine.runs import RunManager

    manager = RunManager(runs_root)
    if spec is None or str(spec) == "":
        for info in manager.list_runs():  # newest run first
            found = _newest_in_folder(info.path / "checkpoints")
            if found is not None:
                path, step = found
                return ResolvedCheckpoint(path, info.name, step,
                                          f"the newest checkpoint of the newest run: {info.name}, step {step} ({path})")
        raise CheckpointError(f"no run in {manager.root} has a checkpoint yet",
                              hint="train one (nanogpt-tui train), import one (nanogpt-tui import PATH), or give a path")
    path = Path(spec).expanduser()
    if path.is_file():
        return ResolvedCheckpoint(path, None, None, str(path))
    if path.is_dir():
        return _from_folder(path)
    try:
        run_dir = manager.run_dir(str(spec))
    except ConfigError:
        run_dir = None
    if run_dir is not None and (run_dir / "run.json").exists():
        found = _newest_in_folder(run_dir / "checkpoints")
        if found is None:
            raise CheckpointError(f"run {spec!r} has no checkpoint yet", hint="wait for its first checkpoint")
        path, step = found
        return ResolvedCheckpoint(path, run_dir.name, step, f"run {run_dir.name}, step {step} ({path})")
    raise RunError(f"{spec!r} is neither a checkpoint file nor a run",
                   hint="give a .pt path, a run name (list them with: nanogpt-tui runs), or nothing for the newest")
