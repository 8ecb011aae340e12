"""A path field that completes file and folder names as you type (→ accepts), like a shell's Tab."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester
from textual.widgets import Input

MAX_LISTED = 2000  # a huge folder is not worth scanning for one suggestion


class PathSuggester(Suggester):
    """Suggests the first entry of the typed folder that starts with the typed name (folders get a /)."""

    def __init__(self, suffixes: tuple[str, ...] = ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        folder_text, _, prefix = value.rpartition("/")
        root = value.startswith("/") and not folder_text
        folder = Path("/") if root else Path(os.path.expanduser(folder_text or "."))
        try:
            with os.scandir(folder) as entries:
                names = []
                for index, entry in enumerate(entries):
                    if index >= MAX_LISTED:
                        break
                    if entry.name.startswith(prefix) and not (entry.name.startswith(".") and not prefix.startswith(".")):
                        is_dir = entry.is_dir()
                        if is_dir or not self.suffixes or entry.name.endswith(self.suffixes):
                            names.append(entry.name + ("/" if is_dir else ""))
        except OSError:
            return None
        if not names:
            return None
        return value[: len(value) - len(prefix)] + min(names)


class PathInput(Input):
    """An Input with path completion; `suffixes` limits suggested files (folders are always suggested)."""

    def __init__(self, value: str = "", *, suffixes: tuple[str, ...] = (), placeholder: str = "",
                 id: str | None = None) -> None:
        super().__init__(value, placeholder=placeholder, compact=True, suggester=PathSuggester(suffixes), id=id)


def display_path(path: Path) -> str:
    """A path as short as it stays unambiguous: relative to the working folder when inside it, else with ~."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        pass
    home = Path.home()
    try:
        return str(Path("~") / path.relative_to(home))
    except ValueError:
        return str(path)
