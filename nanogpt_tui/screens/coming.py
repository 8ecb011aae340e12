"""A top-level screen whose feature is not in this version yet; it says so and shows nothing else."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Header, Static

from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.widgets.nav import NavTabs


class ComingScreen(AppScreen[None]):
    """Names the screen and what it will do; no fake content."""

    def __init__(self, title: str, purpose: str) -> None:
        super().__init__()
        self._title = title
        self._purpose = purpose

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavTabs(self._title.lower())
        yield Static(
            f"[b]{self._title}[/b] is not available in this version of nanogpt-tui.\n\n"
            f"It will {self._purpose}.\nPress 1 for the Runs screen.",
            classes="coming",
        )
        yield Footer()
