"""Messages of the chat and evaluate screens: a model loaded, replies and samples streamed, evaluations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engine.inference.evaluate import EvalReport
    from engine.runs.protocol import CheckpointEntry
    from nanogpt_tui.model_service import LoadedModel


# a generation worker posts streamed text at most this often: every message wakes the UI thread, which
# then holds the interpreter lock the generation needs; tokens that come faster ride along with the next
POST_EVERY_S = 0.05


@dataclass
class ModelLoaded(Message):
    """A checkpoint's weights are loaded and ready to generate."""

    model: LoadedModel
    # which request this answers: a screen keeps only the answer to its latest one
    ticket: int = 0


@dataclass
class NewestCheckpointFound(Message):
    """The checkpoint a screen opens with when none was chosen (the CLI's "nothing" rule); None when there is none."""

    entry: CheckpointEntry | None


@dataclass
class ReplyStreamed(Message):
    """The reply so far (cumulative, so only the latest one needs drawing)."""

    text: str
    tokens: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ReplyStreamed)


@dataclass
class TurnsDropped(Message):
    """The oldest turns were dropped so the conversation fits the model's context."""

    dropped: int
    total_dropped: int
    fits: bool


@dataclass
class ReplyCompleted(Message):
    """The reply ended (stop token, length, or cancelled with its partial text kept)."""

    text: str
    finish_reason: str
    tokens: int
    tokens_per_s: float | None
    context_tokens: int
    context_window: int
    seed: int
    reads_last: int = 0  # how far back the model attends (Generator.attention_span)


@dataclass
class EvaluationProgressed(Message):
    """Fraction (0..1) of the evaluation rows done."""

    fraction: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EvaluationProgressed)


@dataclass
class EvaluationCompleted(Message):
    """Val loss and bits per byte of one checkpoint on one data set."""

    label: str
    report: EvalReport


@dataclass
class EvaluationStopped(Message):
    """The user cancelled the evaluation; nothing was measured."""


@dataclass
class SampleStreamed(Message):
    """The text so far of one of the side-by-side samples."""

    sample: int
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SampleStreamed) and message.sample == self.sample


@dataclass
class SamplesCompleted(Message):
    """All samples ended: the text and finish reason of each, by sample index."""

    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    tokens: int
    seconds: float
