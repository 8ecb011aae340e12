"""Messages of the runs screen, the app's first: read before its first frame, so only these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engine.runs import RunInfo


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
class PollFailed(Message):
    """A polling worker's read failed this time; it goes on polling."""

    error: BaseException

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PollFailed)
