"""Textual's Footer, rebuilt once per refresh however many times the bindings change before it."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """Coalesces binding changes: Textual's Footer recomposes once per change signal.

    A screen's start publishes several (mount, first focus, each screen's own refresh), and each
    recompose builds and styles every key again: five rebuilds of 11 keys were ~15 % of the CPU
    time to the app's first frame. One rebuild after the burst shows the same keys.
    """

    _rebuild_pending = False

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True  # Textual's flag: compose shows keys once a change has arrived
        if self._rebuild_pending or not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_pending = False
        await self.recompose()
