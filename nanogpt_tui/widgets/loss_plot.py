"""A plotext chart of loss curves with x axis (steps or tokens), log-scale and smoothing toggles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from textual.timer import Timer
from textual_plotext import PlotextPlot

from nanogpt_tui.series import Curve

# the worker keeps about two points per column (plotext's braille marker has two per cell)
POINTS_PER_COLUMN = 2
MIN_POINTS = 80
# new data redraws the plot at most this often; plotext's rendering is the dashboard's main CPU cost
REDRAW_INTERVAL_S = 0.5


def drawable(xs: Sequence[float], ys: Sequence[float], *, log_scale: bool) -> list[tuple[float, float]]:
    """The points plotext can draw: finite numbers (NaN or infinity breaks its axes), y > 0 on a log axis."""
    return [(x, y) for x, y in zip(xs, ys)
            if _finite(x) and _finite(y) and (y > 0 or not log_scale)]


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class LossPlot(PlotextPlot):
    """Draws labelled curves, at most twice a second; the toggles redraw the same data at once."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._title = title
        self._curves: dict[str, Curve] = {}
        self.by_tokens = False
        self.log_scale = False
        self.smooth = False
        self._throttle: Timer | None = None
        self._stale = False

    @property
    def curves(self) -> Mapping[str, Curve]:
        """The curves being plotted, by label (what the plot shows; read-only)."""
        return MappingProxyType(self._curves)

    @property
    def max_points(self) -> int:
        """How many points per curve are worth drawing at the current width."""
        return max(MIN_POINTS, POINTS_PER_COLUMN * self.size.width)

    def set_curves(self, curves: dict[str, Curve]) -> None:
        self._curves = curves
        if self._throttle is not None:
            self._stale = True
            return
        self._draw()
        self._throttle = self.set_timer(REDRAW_INTERVAL_S, self._throttle_ended)

    def _throttle_ended(self) -> None:
        self._throttle = None
        if self._stale:
            self._stale = False
            self.set_curves(self._curves)

    def toggle(self, setting: str) -> None:
        """Flip one of by_tokens, log_scale, smooth and redraw."""
        setattr(self, setting, not getattr(self, setting))
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        drawn = 0
        for label, curve in self._curves.items():
            xs = curve.tokens if self.by_tokens else curve.steps
            ys = curve.smoothed if self.smooth else curve.values
            points = drawable(xs, ys, log_scale=self.log_scale)
            if points:
                plt.plot([x for x, _ in points], [y for _, y in points], label=label, marker="braille")
                drawn += 1
        # plotext fails on a log axis without points; with nothing to draw the flag waits for data
        plt.yscale("log" if self.log_scale and drawn else "linear")
        flags = [name for name, on in (("log", self.log_scale), ("smoothed", self.smooth)) if on]
        plt.title(self._title + (f" ({', '.join(flags)})" if flags else ""))
        plt.xlabel("tokens" if self.by_tokens else "step")
        self.refresh()
