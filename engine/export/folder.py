"""An export folder appears whole or not at all: files go into a hidden sibling that is renamed at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.atomic import fsync_dir
from engine.errors import ConfigError


def check_target(out_dir: Path) -> None:
    """Refuse a target that exists and holds something, so nothing of the user's is overwritten."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} already exists and is not an empty folder",
                          hint="choose a new --out folder (it is created), or empty this one")


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a temp folder beside out_dir; on success it becomes out_dir, on failure it is removed."""
    out_dir = Path(out_dir).expanduser().absolute()
    check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield staging
        for child in staging.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); os.replace cannot replace a folder on every platform
        os.replace(staging, out_dir)
        fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
