"""Messages of the checkpoints screen, its servers and the fine-tune form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from pathlib import Path

    from engine.config import FinetuneConfig
    from engine.serve.processes import ServerInfo
    from engine.runs.protocol import CheckpointEntry


@dataclass
class ServersListed(Message):
    """The model servers the app started were looked up again (only live ones)."""

    servers: tuple[ServerInfo, ...]
    listed_at: float  # time.monotonic() of the look-up: a restarted poll's older answer must not win

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ServersListed)


@dataclass
class ServerStarted(Message):
    """A server for a checkpoint listens now."""

    server: ServerInfo


@dataclass
class CheckpointsListed(Message):
    """The sidecars of every run's checkpoints were read (no weights)."""

    entries: tuple[CheckpointEntry, ...]
    # sidecars that could not be used, each naming its run and file
    problems: tuple[str, ...] = ()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, CheckpointsListed)


@dataclass
class CheckpointConfigRead(Message):
    """The full config of the highlighted checkpoint's run was read."""

    path: Path
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, CheckpointConfigRead)


@dataclass
class FinetuneDefaultsRead(Message):
    """The parent checkpoint's fine-tune settings, which the form starts from (None with an error)."""

    defaults: FinetuneConfig | None
    error: str = ""


@dataclass
class ConversationsChecked(Message):
    """A conversation file or folder was validated (structure only; tokens need the model's tokenizer)."""

    path: str
    summary: list[str]
    problems: str
    usable: bool

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConversationsChecked)
