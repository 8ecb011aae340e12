"""Messages that workers post to the UI; past-tense events, merged with can_replace where only the latest counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from pathlib import Path

    from engine.config import FinetuneConfig, Hyperparameters
    from engine.inference.evaluate import EvalReport
    from engine.runs import RunInfo
    from engine.serve.processes import ServerInfo
    from nanogpt_tui.model_service import CheckpointEntry, LoadedModel
    from nanogpt_tui.series import Curve, SeriesSnapshot


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


# --------------------------------------------------------------------------- checkpoints, evaluate, chat

# a generation worker posts streamed text at most this often: every message wakes the UI thread, which
# then holds the interpreter lock the generation needs; tokens that come faster ride along with the next
POST_EVERY_S = 0.05


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
