"""Import an original modded-nanogpt checkpoint (state_step*.pt) as a run of kind "import"."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static
from textual.worker import Worker, WorkerState

from engine.importer import ImportResult
from nanogpt_tui.app import error_text
from nanogpt_tui.widgets.path_input import PathInput

if TYPE_CHECKING:
    from nanogpt_tui.app import NanoGPTApp

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin")


def path_problem(text: str) -> str:
    """Why the typed path cannot be imported, or "" when it looks like a checkpoint file."""
    if not text.strip():
        return "type the path of a checkpoint file (ctrl+o browses)"
    path = Path(text.strip()).expanduser()
    if not path.exists():
        return f"{path} does not exist"
    if path.is_dir():
        return f"{path} is a folder: choose the state_step*.pt file in it"
    if path.suffix not in CHECKPOINT_SUFFIXES:
        return f"expected a PyTorch checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), got {path.name}"
    return ""


class ImportFormScreen(ModalScreen[ImportResult | None]):
    """Dismisses with the import's result, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "import_checkpoint", "Import"),
        Binding("ctrl+o", "browse", "Browse"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="import-dialog"):
            yield Static("[b]Import a checkpoint[/b]\nAn original modded-nanogpt [i]state_step*.pt[/i] (its shape is "
                         "inferred from the weights, with the GPT-2 tokenizer), the original's fine-tune output, or one of "
                         "ours. It becomes a run of kind [i]import[/i] that you can chat with, evaluate and fine-tune.")
            with Horizontal(classes="field"):
                yield Label("Checkpoint", classes="field-label")
                yield PathInput(placeholder="/path/to/logs/<run-id>/state_step004000.pt", suffixes=CHECKPOINT_SUFFIXES,
                                id="import-path")
            with Horizontal(classes="field"):
                yield Label("Run name", classes="field-label")
                yield Input(placeholder="automatic (import-…)", compact=True, id="import-name")
            yield Checkbox("Trust its pickled objects (only the original's finetune.py output needs this; loading may "
                           "run code)", compact=True, id="import-trust")
            yield Static("", id="import-status")
            with Horizontal(classes="buttons"):
                yield Button("Import", variant="primary", id="import", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#import-path", Input).focus()
        self._check()

    @on(Input.Changed)
    def _check(self) -> str:
        problem = path_problem(self.query_one("#import-path", Input).value)
        self.query_one("#import-status", Static).update(Text(problem, style="yellow") if problem else "")
        self.query_one("#import", Button).disabled = bool(problem)
        return problem

    def action_browse(self) -> None:
        from nanogpt_tui.screens.file_picker import FilePickerScreen

        def chosen(path: str | None) -> None:
            if path:
                self.query_one("#import-path", Input).value = path

        self.app.push_screen(FilePickerScreen("Checkpoint to import", Path.cwd(), CHECKPOINT_SUFFIXES), chosen)

    @on(Button.Pressed, "#import")
    @on(Input.Submitted)
    def action_import_checkpoint(self) -> None:
        problem = self._check()
        if problem:
            self.notify(problem, severity="warning")
            return
        self.query_one("#import", Button).disabled = True
        self.query_one("#import-status", Static).update("Reading the weights and writing the run…")
        self._import(self.query_one("#import-path", Input).value.strip(),
                     self.query_one("#import-name", Input).value.strip() or None,
                     self.query_one("#import-trust", Checkbox).value)

    @work(thread=True, exclusive=True, group="import", exit_on_error=False)
    def _import(self, path: str, name: str | None, trust_pickle: bool) -> ImportResult:
        app: NanoGPTApp = self.app  # type: ignore[assignment]
        return app.engine.import_checkpoint(path, name, trust_pickle=trust_pickle)

    @on(Worker.StateChanged)
    def _import_done(self, event: Worker.StateChanged) -> None:
        result = event.worker.result
        if event.state == WorkerState.SUCCESS and isinstance(result, ImportResult):
            notes = "".join(f"\n{note}" for note in result.notes)
            self.notify(f"Imported as run {result.name}.{notes}", timeout=8)
            self.dismiss(result)
        elif event.state == WorkerState.ERROR and event.worker.error is not None:
            self.query_one("#import-status", Static).update(Text(error_text(event.worker.error), style="red"))
            self.query_one("#import", Button).disabled = False
            self.app.notify(error_text(event.worker.error), title="Import failed", severity="error", timeout=8)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
