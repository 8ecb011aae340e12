"""The help screen: every key of the app, screen by screen."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    """Lists (section, bindings) pairs; any of Escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", key_display="esc"),
    ]

    def __init__(self, sections: list[tuple[str, list[Binding]]], settings_file: Path) -> None:
        super().__init__()
        self._sections = sections
        self._settings_file = settings_file

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("action")
        for title, bindings in self._sections:
            table.add_row(f"[underline]{title}[/underline]", "")
            for binding in bindings:
                keys = binding.key_display or ", ".join(self.app.get_key_display(Binding(k, "")) for k in binding.key.split(","))
                table.add_row(keys, binding.description)
            table.add_row("", "")
        table.add_row("ctrl+p", "command palette: every action by name")
        table.add_row("ctrl+q", "quit (running trainings keep going)")
        with VerticalScroll(id="help"):
            yield Static("[b]Keys[/b]  (Escape closes)", classes="title")
            yield Static(table)
            yield Static(f"Settings (data directory, default preset, theme): {self._settings_file}", markup=False)
