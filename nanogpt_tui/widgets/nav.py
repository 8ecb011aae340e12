"""The row of tabs on top-level screens; choosing one switches the app's mode."""

from __future__ import annotations

from textual import on
from textual.widgets import Tab, Tabs

SCREEN_TABS = (("runs", "1 Runs"), ("checkpoints", "2 Checkpoints"), ("evaluate", "3 Evaluate"), ("chat", "4 Chat"))


class NavTabs(Tabs):
    """Tabs for the app's modes, with `current` active."""

    def __init__(self, current: str) -> None:
        super().__init__(*(Tab(label, id=mode) for mode, label in SCREEN_TABS), active=current)
        self._current = current

    @on(Tabs.TabActivated)
    def _switch(self, event: Tabs.TabActivated) -> None:
        event.stop()
        mode = event.tab.id
        if mode and mode != self._current:
            self.app.switch_mode(mode)
            # this screen stays behind in its mode; show its own tab again when it comes back
            self.active = self._current
