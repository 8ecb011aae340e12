"""A modal list of every checkpoint (from sidecars) to choose one for chat or evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from nanogpt_tui.messages.checkpoints import CheckpointsListed
from engine.runs.protocol import CheckpointEntry
from nanogpt_tui import format as fmt

if TYPE_CHECKING:
    from nanogpt_tui.app import NanoGPTApp


def entry_line(entry: CheckpointEntry) -> Text:
    """run @ step, kind, val loss and size on one line."""
    text = Text(f"{entry.run} @ {entry.step}", style="bold")
    text.append(f"  {entry.kind}", style="magenta" if entry.finetuned else "dim")
    text.append(f"  val {fmt.loss(entry.number('val_loss'))}  bpb {fmt.loss(entry.number('val_bpb'))}"
                f"  {fmt.size(entry.number('size_bytes') or 0)}")
    return text


class CheckpointPickerScreen(ModalScreen[CheckpointEntry | None]):
    """Dismisses with the chosen checkpoint, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self._purpose = purpose
        self._entries: list[CheckpointEntry] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="checkpoint-picker"):
            yield Static(f"[b]Choose a checkpoint to {self._purpose}[/b]  (Enter chooses, Escape cancels)")
            yield OptionList(id="picker-options")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self._list()

    @work(thread=True, exclusive=True, group="picker-list", exit_on_error=False)
    def _list(self) -> None:
        app: NanoGPTApp = self.app  # type: ignore[assignment]
        self.post_message(CheckpointsListed(tuple(app.engine.list_checkpoints())))

    @on(CheckpointsListed)
    def _listed(self, event: CheckpointsListed) -> None:
        self._entries = list(event.entries)
        options = self.query_one(OptionList)
        options.clear_options()
        if not self._entries:
            options.add_option(Option("No checkpoints yet: train a run or import one (Checkpoints screen, i).",
                                      disabled=True))
            return
        options.add_options([Option(entry_line(entry), id=str(index)) for index, entry in enumerate(self._entries)])
        options.highlighted = 0

    @on(Worker.StateChanged)
    def _list_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            app: NanoGPTApp = self.app  # type: ignore[assignment]
            app.show_error(event.worker.error)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(self._entries[int(event.option.id)])
