"""A modal file picker: a folder tree filtered by suffix, and a path field to jump anywhere."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Static

from nanogpt_tui.widgets.path_input import PathInput


class FilteredTree(DirectoryTree):
    """Folders, and files with one of `suffixes` (all files when empty); hidden entries left out."""

    def __init__(self, path: Path, suffixes: tuple[str, ...], *, id: str | None = None) -> None:
        self.suffixes = suffixes
        super().__init__(path, id=id)

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (not self.suffixes or p.is_dir() or p.name.endswith(self.suffixes))]


class FilePickerScreen(ModalScreen[str | None]):
    """Dismisses with the chosen path, or None. Enter on a file chooses it; on the path field, a folder opens."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("backspace", "parent_folder", "Up a folder", show=False),
    ]

    def __init__(self, title: str, start: Path, suffixes: tuple[str, ...] = (), *, allow_folders: bool = False) -> None:
        super().__init__()
        self._title = title
        self._start = start if start.is_dir() else Path.cwd()
        self._suffixes = suffixes
        self._allow_folders = allow_folders

    def compose(self) -> ComposeResult:
        hint = "Enter opens a folder or chooses a file"
        if self._allow_folders:
            hint += "; Enter on the path field chooses what it names, a folder too"
        with Vertical(classes="dialog wide", id="file-picker"):
            yield Static(f"[b]{self._title}[/b]\n{hint}. Escape cancels.")
            yield PathInput(str(self._start), suffixes=self._suffixes, id="picker-path")
            yield FilteredTree(self._start, self._suffixes, id="picker-tree")

    def on_mount(self) -> None:
        self.query_one("#picker-tree", FilteredTree).focus()

    @on(DirectoryTree.FileSelected)
    def _file_chosen(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    @on(Input.Submitted, "#picker-path")
    def _path_typed(self, event: Input.Submitted) -> None:
        event.stop()
        path = Path(event.value).expanduser()
        if path.is_file() or (self._allow_folders and path.is_dir()):
            self.dismiss(str(path))
        elif path.is_dir():
            self._tree().path = path
            self._tree().focus()
        else:
            self.notify(f"{path} does not exist.", severity="warning")

    def _tree(self) -> FilteredTree:
        return self.query_one("#picker-tree", FilteredTree)

    def action_parent_folder(self) -> None:
        tree = self._tree()
        if tree.has_focus:
            parent = Path(tree.path).parent
            tree.path = parent
            self.query_one("#picker-path", Input).value = str(parent)
