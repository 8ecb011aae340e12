"""Messages of the dashboard, its log and the run comparison: what a run's files say as they grow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engine.config import Hyperparameters
    from engine.runs import RunInfo
    from nanogpt_tui.series import Curve, SeriesSnapshot


@dataclass
class RunStatusRead(Message):
    """status.json / run.json of the followed run were read again."""

    info: RunInfo

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStatusRead)


@dataclass
class RunConfigRead(Message):
    """config.toml of the followed run was read; `error` says why not when `config` is None."""

    config: Hyperparameters | None
    error: str = ""


@dataclass
class MetricsFollowed(Message):
    """New metrics lines were folded into the followed run's series."""

    snapshot: SeriesSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MetricsFollowed)


@dataclass
class RunWarned(Message):
    """The run reported a problem it survived (e.g. a checkpoint that could not be written)."""

    text: str


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
    """NVML was polled: the devices, or the sentence that says why there are none to show."""

    devices: tuple[GpuStats, ...] | str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuStatsRead)


@dataclass
class ValCurvesRead(Message):
    """Validation curves of the compared runs, by run name."""

    curves: dict[str, Curve]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ValCurvesRead)
