"""Validation loss of several runs on one plot, by tokens seen, kept up to date."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Header, Static

from nanogpt_tui.messages.dashboard import ValCurvesRead
from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.polling import keep_polling
from nanogpt_tui.widgets.loss_plot import MIN_POINTS, LossPlot
from nanogpt_tui.series import RunSeries
from nanogpt_tui.widgets.footer import KeyBar

REFRESH_S = 1.0


class CompareScreen(AppScreen[None]):
    """Overlays the val-loss curves of the named runs."""

    HELP_TITLE = "Compare"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("x", "toggle_plot('by_tokens')", "Tokens/steps"),
        Binding("g", "toggle_plot('log_scale')", "Log scale"),
        Binding("m", "toggle_plot('smooth')", "Smoothing"),
    ]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self._names = names
        self._max_points = MIN_POINTS

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Validation loss of {', '.join(self._names)}", classes="screen-title")
        yield LossPlot("val loss", id="compare-plot")
        yield KeyBar()

    def on_mount(self) -> None:
        plot = self.query_one(LossPlot)
        plot.by_tokens = True
        self._max_points = plot.max_points
        self._follow()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _follow(self) -> None:
        readers = {name: self.engine.metrics_reader(name) for name in self._names}
        series = {name: RunSeries() for name in self._names}
        changed = True  # draw the axes even before the first line
        while True:
            for name, reader in readers.items():
                events = reader.read_new()
                if events:
                    series[name].add(events)
                    changed = True
            if changed:
                self.post_message(ValCurvesRead({name: s.val_curve(self._max_points) for name, s in series.items()}))
                changed = False
            if not keep_polling(REFRESH_S):
                return

    @on(ValCurvesRead)
    def _show(self, event: ValCurvesRead) -> None:
        self.query_one(LossPlot).set_curves(event.curves)

    def action_toggle_plot(self, setting: str) -> None:
        self.query_one(LossPlot).toggle(setting)

    def action_back(self) -> None:
        self.dismiss()
