"""A run's whole train.log (its last part for long logs), following new lines."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Header, Static

from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.widgets.log_tail import LogTail
from nanogpt_tui.widgets.footer import KeyBar


class LogScreen(AppScreen[None]):
    """train.log of one run."""
    CSS_PATH = "css/dashboard.tcss"  # loaded when the screen is first shown, not for the first frame

    HELP_TITLE = "Log"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("f", "follow", "Follow"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.run_name = name

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"train.log of [b]{self.run_name}[/b]", classes="screen-title")
        yield LogTail(id="full-log", max_lines=20000)
        yield KeyBar()

    def on_mount(self) -> None:
        log = self.query_one(LogTail)
        log.follow(self.engine.run_dir(self.run_name) / "train.log")
        log.focus()

    def action_follow(self) -> None:
        following = self.query_one(LogTail).toggle_follow()
        self.notify(f"Following the log: {'on' if following else 'off'}")

    def action_back(self) -> None:
        self.dismiss()
