"""The fine-tune form: a parent checkpoint, conversation data (checked as you type), and the main settings."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Header, Input, Label, Select, Static
from textual.worker import Worker

from engine.config import FinetuneConfig, choices
from engine.data.examples import DEFAULT_EXAMPLE, example_path
from engine.errors import ConfigError, EngineError
from engine.limits import FIELD_LIMITS
from engine.paths import validate_name
from engine.runs import RunInfo
from nanogpt_tui.app import error_text
from nanogpt_tui.messages.checkpoints import ConversationsChecked, FinetuneDefaultsRead
from engine.runs.protocol import CheckpointEntry
from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.polling import keep_polling
from nanogpt_tui.widgets.path_input import PathInput
from nanogpt_tui.widgets.footer import KeyBar

CHECK_DELAY_S = 0.3  # wait for typing to pause before reading the data
DATA_SUFFIXES = (".json", ".jsonl")


def parse_settings(values: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """(`--set` overrides, errors by field) for the form's text fields."""
    overrides: list[str] = []
    errors: dict[str, str] = {}
    for key in ("epochs", "lr", "val_fraction"):
        limit = FIELD_LIMITS[f"finetune.{key}"]  # the ranges the config and the command line use
        text = values.get(key, "").strip()
        try:
            value: int | float = int(text) if limit.integer else float(text)
        except ValueError:
            errors[key] = f"expected {limit.describe()}"
            continue
        problem = limit.problem(value)
        if problem is not None:
            errors[key] = problem
        else:
            overrides.append(f"finetune.{key}={value!r}")
    name = values.get("name", "").strip()
    if name:
        try:
            validate_name(name)  # the engine's rule, which the launch applies too
        except ConfigError as err:
            errors["name"] = err.hint or err.message
    return overrides, errors


class FinetuneFormScreen(AppScreen[RunInfo | None]):
    """Dismisses with the launched fine-tune run, or None when cancelled."""
    CSS_PATH = "css/finetune.tcss"  # loaded when the screen is first shown, not for the first frame

    HELP_TITLE = "Fine-tune form"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "launch", "Launch"),
        Binding("ctrl+o", "browse", "Browse data"),
        Binding("ctrl+g", "example", "Bundled example"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, parent: CheckpointEntry) -> None:
        super().__init__()
        self.parent_entry = parent
        self._data_usable = False
        self._launching = False
        # the parent's own [finetune] settings, read in a worker; nothing launches before they arrive
        self._defaults: FinetuneConfig | None = None

    def compose(self) -> ComposeResult:
        # placeholders until the parent's settings arrive (FinetuneDefaultsRead fills the fields)
        defaults = FinetuneConfig()
        yield Header()
        # a path may hold brackets, which are not markup
        yield Static(f"Fine-tune from [b]{escape(self.parent_entry.label)}[/b]  ({escape(str(self.parent_entry.path))})",
                     classes="screen-title")
        with VerticalScroll(id="ft-form"):
            yield Static("Data", classes="section")
            yield self._row("Conversations", PathInput(
                placeholder=f".json, .jsonl or a folder (ctrl+o browses, ctrl+g: the bundled {DEFAULT_EXAMPLE})",
                suffixes=DATA_SUFFIXES, id="ft-data"), "data")
            yield Static("", id="ft-data-summary")
            yield Static("Training", classes="section")
            yield self._row("Run name", Input(placeholder="automatic", compact=True, id="ft-name"), "name")
            yield Static("Reading the parent's fine-tune settings…", id="ft-defaults")
            yield self._row("Epochs", Input(str(defaults.epochs), compact=True, disabled=True, id="ft-epochs"),
                            "epochs")
            yield self._row("Learning rate", Input(repr(defaults.lr), compact=True, disabled=True, id="ft-lr"), "lr")
            optimizers, templates = choices("finetune.optimizer"), choices("finetune.template")
            yield self._row("Optimizer", Select([(o, o) for o in optimizers], value=defaults.optimizer,
                                                allow_blank=False, compact=True, disabled=True, id="ft-optimizer"))
            yield self._row("Template", Select([(t, t) for t in templates], value=defaults.template,
                                               allow_blank=False, compact=True, disabled=True, id="ft-template"))
            yield self._row("Val fraction", Input(repr(defaults.val_fraction), compact=True, disabled=True,
                                                  id="ft-val_fraction"), "val_fraction")
            yield Checkbox("Skip invalid conversations (and report them) instead of refusing the data",
                           compact=True, id="ft-skip")
        yield Static("", id="ft-error")
        with Horizontal(id="form-buttons"):
            yield Button("Launch", variant="primary", id="launch", disabled=True)
            yield Button("Cancel", id="cancel")
        yield KeyBar()

    @staticmethod
    def _row(label: str, widget: Widget, key: str | None = None) -> Horizontal:
        error = [Static("", id=f"ft-error-{key}", classes="field-error")] if key else []
        return Horizontal(Label(label, classes="field-label"), widget, *error, classes="field")

    def on_mount(self) -> None:
        self.query_one("#ft-data", Input).focus()
        self._read_defaults()
        self._validate()

    @work(thread=True, exclusive=True, group="defaults", exit_on_error=False)
    def _read_defaults(self) -> None:
        try:
            self.post_message(FinetuneDefaultsRead(self.engine.finetune_defaults(self.parent_entry)))
        except EngineError as err:
            self.post_message(FinetuneDefaultsRead(None, error_text(err)))

    @on(FinetuneDefaultsRead)
    def _defaults_read(self, event: FinetuneDefaultsRead) -> None:
        note = self.query_one("#ft-defaults", Static)
        if event.defaults is None:
            note.update(Text(f"The parent's settings cannot be read: {event.error}", style="red"))
            return
        self._defaults = defaults = event.defaults
        for key, value in (("epochs", str(defaults.epochs)), ("lr", repr(defaults.lr)),
                           ("val_fraction", repr(defaults.val_fraction))):
            self.query_one(f"#ft-{key}", Input).value = value
        self.query_one("#ft-optimizer", Select).value = defaults.optimizer
        self.query_one("#ft-template", Select).value = defaults.template
        for widget in self.query(".field Input, .field Select"):
            widget.disabled = False
        note.update(Text("Defaults from the parent's config, as `nanogpt-tui finetune` uses them.", style="dim"))
        self._validate()

    def action_example(self) -> None:
        """Train on the conversations shipped with the package."""
        data = self.query_one("#ft-data", Input)
        data.value = str(example_path())
        data.focus()

    def _values(self) -> dict[str, str]:
        return {str(field.id).removeprefix("ft-"): field.value for field in self.query(Input)}

    def _overrides(self) -> tuple[list[str], dict[str, str]]:
        overrides, errors = parse_settings(self._values())
        overrides.append(f"finetune.optimizer={self.query_one('#ft-optimizer', Select).value!r}")
        overrides.append(f"finetune.template={self.query_one('#ft-template', Select).value!r}")
        if self.query_one("#ft-skip", Checkbox).value:
            overrides.append("finetune.skip_invalid=true")
        if not self.query_one("#ft-data", Input).value.strip():
            errors["data"] = "choose the conversations to train on"
        return overrides, errors

    def _validate(self) -> dict[str, str]:
        _, errors = self._overrides()
        for widget in self.query(".field-error"):
            assert isinstance(widget, Static)
            message = errors.get(str(widget.id).removeprefix("ft-error-"), "")
            widget.update(message)
            widget.display = bool(message)
        skip = self.query_one("#ft-skip", Checkbox).value
        ready = not errors and (self._data_usable or skip) and not self._launching and self._defaults is not None
        self.query_one("#launch", Button).disabled = not ready
        return errors

    @on(Input.Changed, "#ft-data")
    def _data_changed(self, event: Input.Changed) -> None:
        self._data_usable = False
        self.query_one("#ft-data-summary", Static).update(Text("checking…", style="dim"))
        self._check_data(event.value.strip())
        self._validate()

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self._validate()

    @work(thread=True, exclusive=True, group="check-data", exit_on_error=False)
    def _check_data(self, path: str) -> None:
        if not path or not keep_polling(CHECK_DELAY_S):
            return
        try:
            report = self.engine.check_conversations(path)
        except EngineError as err:
            self.post_message(ConversationsChecked(path, [], error_text(err), False))
            return
        problems = report.problem_text() if report.issues else ""
        self.post_message(ConversationsChecked(path, report.summary_lines(), problems, bool(report.conversations)))

    @on(ConversationsChecked)
    def _data_checked(self, event: ConversationsChecked) -> None:
        if event.path != self.query_one("#ft-data", Input).value.strip():
            return
        text = Text("\n".join(event.summary), style="green" if event.usable and not event.problems else "")
        if event.problems:
            text.append(("\n" if event.summary else "") + event.problems, style="red")
        self._data_usable = event.usable and not event.problems
        self.query_one("#ft-data-summary", Static).update(text)
        self._validate()

    def action_browse(self) -> None:
        from nanogpt_tui.screens.file_picker import FilePickerScreen

        def chosen(path: str | None) -> None:
            if path:
                self.query_one("#ft-data", Input).value = path

        current = Path(self.query_one("#ft-data", Input).value.strip() or ".").expanduser()
        start = current if current.is_dir() else current.parent
        self.app.push_screen(FilePickerScreen("Conversations to fine-tune on", start, DATA_SUFFIXES,
                                              allow_folders=True), chosen)

    @on(Button.Pressed, "#launch")
    @on(Input.Submitted)
    def action_launch(self) -> None:
        if self._validate() or self.query_one("#launch", Button).disabled:
            self.notify("Fix the marked fields and choose valid conversation data first.", severity="warning")
            return
        overrides, _ = self._overrides()
        values = self._values()
        self._launching = True
        self._validate()
        self.query_one("#ft-error", Static).update("Reading the parent checkpoint and the data, then launching…")
        self._launch(values["data"].strip(), values["name"].strip() or None, overrides)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _launch(self, data: str, name: str | None, overrides: list[str]) -> RunInfo:
        return self.engine.launch_finetune(self.parent_entry, data, name, overrides)

    def worker_succeeded(self, worker: Worker[object]) -> None:
        if worker.group == "launch" and isinstance(worker.result, RunInfo):
            self.notify(f"Fine-tune {worker.result.name} started.")
            self.dismiss(worker.result)

    def worker_failed(self, worker: Worker[object], error: BaseException) -> None:
        if worker.group == "launch":
            self._launching = False
            self.query_one("#ft-error", Static).update(Text(error_text(error), style="red"))
            self._validate()
        super().worker_failed(worker, error)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
