"""Messages that workers post to the UI; past-tense events, merged with can_replace where only the latest counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engine.runs import RunInfo
    from nanogpt_tui.widgets.series import Curve, SeriesSnapshot


@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of the runs table: the run and a sparkline of its train loss."""

    info: RunInfo
    sparkline: str


@dataclass
class RunsListed(Message):
    """The run directories were read again."""

    rows: tuple[RunRow, ...]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)


@dataclass
class RunStatusRead(Message):
    """status.json / run.json of the followed run were read again."""

    info: RunInfo

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStatusRead)


@dataclass
class MetricsFollowed(Message):
    """New metrics lines were folded into the followed run's series."""

    snapshot: SeriesSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MetricsFollowed)


@dataclass
class LogLinesRead(Message):
    """Lines appended to a followed text file (every batch counts, so never merged)."""

    lines: list[str]


@dataclass(frozen=True, slots=True)
class GpuStats:
    """Utilisation and memory of one device, as NVML reports them."""

    index: int
    name: str
    utilisation_pct: int
    memory_used: int
    memory_total: int


@dataclass
class GpuStatsRead(Message):
    """NVML was polled; None when NVML is not installed or finds no driver."""

    devices: tuple[GpuStats, ...] | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuStatsRead)


@dataclass
class ValCurvesRead(Message):
    """Validation curves of the compared runs, by run name."""

    curves: dict[str, Curve]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ValCurvesRead)
