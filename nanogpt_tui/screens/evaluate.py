"""The evaluate screen: val loss and bits per byte of checkpoints on chosen data, kept for comparison, and samples."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Header, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker

from engine.sampling_params import SamplingParams
from nanogpt_tui.messages.generation import POST_EVERY_S, EvaluationCompleted, EvaluationProgressed, EvaluationStopped, ModelLoaded, SamplesCompleted, SampleStreamed
from engine.runs.protocol import CheckpointEntry
from nanogpt_tui.model_service import EvaluationCancelled, LoadedModel, sampling_params
from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui import format as fmt
from nanogpt_tui.widgets.nav import NavTabs
from nanogpt_tui.widgets.path_input import PathInput, display_path
from nanogpt_tui.widgets.sampling import SamplingPanel
from nanogpt_tui.widgets.slider import Slider
from nanogpt_tui.widgets.footer import KeyBar

DATA_CHOICES = (("held-out split of its run", "run"), ("embedded Shakespeare (held out)", "shakespeare"),
                ("a text file, folder or .bin shards", "path"))
DATA_SUFFIXES = (".txt", ".bin", ".md")
RESULT_COLUMNS = ("Checkpoint", "Data", "Tokens", "Val loss", "Val bpb", "Time")
MAX_SAMPLES = 4
PRESETS = Binding.Group("Presets", compact=True)
JOB_GROUPS = ("eval-run", "eval-samples")


class SampleView(Static):
    """One streamed sample: the prompt dimmed, then the model's continuation."""

    def __init__(self, index: int) -> None:
        super().__init__(classes="sample")
        self.border_title = f"Sample {index + 1}"

    def show(self, prompt: str, text: str) -> None:
        self.update(Text.assemble((prompt, "dim"), text))


class EvaluateScreen(AppScreen[None]):
    """Evaluate several checkpoints one after another; every result stays in the table."""
    CSS_PATH = "css/evaluate.tcss"  # loaded when the screen is first shown, not for the first frame

    HELP_TITLE = "Evaluate"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "evaluate", "Evaluate"),
        Binding("ctrl+g", "sample", "Samples"),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+o", "choose", "Checkpoint"),
        Binding("ctrl+b", "browse", "Browse data"),
        Binding("f5", "preset('precise')", "Precise", group=PRESETS),
        Binding("f6", "preset('balanced')", "Balanced", group=PRESETS),
        Binding("f7", "preset('creative')", "Creative", group=PRESETS),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._entry: CheckpointEntry | None = None
        self._model: LoadedModel | None = None
        self._cancel: threading.Event | None = None
        self._results: list[tuple[str, float]] = []  # (row key, bpb) for marking the best
        self._prompt = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavTabs("evaluate")
        with Horizontal(id="eval-setup", classes="field"):
            yield Label("Checkpoint", classes="field-label")
            yield Static("none: ctrl+o chooses", id="eval-checkpoint")
        with Horizontal(classes="field"):
            yield Label("Data", classes="field-label")
            yield Select(DATA_CHOICES, value="run", allow_blank=False, compact=True, id="eval-data")
            yield PathInput(placeholder="path (ctrl+b browses)", suffixes=DATA_SUFFIXES, id="eval-path")
            yield Label("Max tokens (0 = all)", id="eval-max-label")
            yield Input("0", compact=True, restrict=r"[0-9]*", id="eval-max-tokens")
        with Horizontal(id="eval-progress-row"):
            yield ProgressBar(total=1.0, show_eta=False, id="eval-progress")
            yield Static("", id="eval-state")
        results: DataTable[object] = DataTable(id="eval-results", cursor_type="row", zebra_stripes=True)
        results.add_columns(*RESULT_COLUMNS)
        results.add_column("", key="best")
        yield results
        with Horizontal(id="eval-samples-area"):
            with VerticalScroll(id="eval-controls", can_focus=False):
                yield Input(placeholder="prompt for the samples", compact=True, id="eval-prompt")
                yield Slider("Samples", 1, MAX_SAMPLES, 2, step=1, big_step=1, decimals=0, id="eval-count")
                yield SamplingPanel(id="sampling")
            yield Horizontal(id="eval-samples")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#eval-controls").border_title = "Samples (ctrl+g)"
        self.query_one("#eval-results").border_title = "Results (kept for comparison)"
        self.query_one("#eval-path").display = False
        self.query_one("#eval-data", Select).focus()
        if self._entry is not None:
            self.open_checkpoint(self._entry)

    # ------------------------------------------------------------------ choosing
    def open_checkpoint(self, entry: CheckpointEntry) -> None:
        self._entry = entry
        if self.is_mounted:
            self.query_one("#eval-checkpoint", Static).update(
                Text.assemble((entry.label, "bold"), f"  {display_path(entry.path)}   ctrl+r evaluates, ctrl+g samples"))

    def action_choose(self) -> None:
        from nanogpt_tui.screens.checkpoint_picker import CheckpointPickerScreen

        def chosen(entry: CheckpointEntry | None) -> None:
            if entry is not None:
                self.open_checkpoint(entry)

        self.app.push_screen(CheckpointPickerScreen("evaluate"), chosen)

    @on(Select.Changed, "#eval-data")
    def _data_kind_changed(self, event: Select.Changed) -> None:
        path = self.query_one("#eval-path", Input)
        path.display = event.value == "path"
        if path.display:
            path.focus()

    def action_browse(self) -> None:
        from nanogpt_tui.screens.file_picker import FilePickerScreen

        def chosen(path: str | None) -> None:
            if path:
                self.query_one("#eval-data", Select).value = "path"
                self.query_one("#eval-path", Input).value = path

        self.app.push_screen(FilePickerScreen("Data to evaluate on", Path.cwd(), DATA_SUFFIXES, allow_folders=True),
                             chosen)

    def action_preset(self, name: str) -> None:
        self.query_one(SamplingPanel).apply_preset(name)

    def _ready(self) -> CheckpointEntry | None:
        if self._cancel is not None:
            self.notify("Something is running: wait, or press Esc to cancel it.", severity="warning")
            return None
        if self._entry is None:
            self.notify("Choose a checkpoint first (ctrl+o).", severity="warning")
        return self._entry

    def _cached_model(self, entry: CheckpointEntry) -> LoadedModel | None:
        return self._model if self._model is not None and self._model.entry_path == entry.path else None

    # ------------------------------------------------------------------ evaluation
    def action_evaluate(self) -> None:
        entry = self._ready()
        if entry is None:
            return
        kind = self.query_one("#eval-data", Select).value
        data = {"run": None, "shakespeare": "shakespeare"}.get(str(kind), self.query_one("#eval-path", Input).value.strip())
        if data == "":
            self.notify("Type the path of the data, or press ctrl+b to browse.", severity="warning")
            return
        max_tokens = int(self.query_one("#eval-max-tokens", Input).value or 0)
        self._cancel = threading.Event()
        self.query_one("#eval-progress", ProgressBar).update(progress=0)
        self._state(f"evaluating {entry.label}…" if self._cached_model(entry) else f"loading {entry.label}…")
        self._evaluate(entry, self._cached_model(entry), data, max_tokens, self._cancel)

    @work(thread=True, exclusive=True, group="eval-run", exit_on_error=False)
    def _evaluate(self, entry: CheckpointEntry, model: LoadedModel | None, data: str | None, max_tokens: int,
                  cancel: threading.Event) -> None:
        if model is None:
            model = self.engine.load_model(entry)
            self.post_message(ModelLoaded(model))
        def progress(fraction: float) -> None:
            self.post_message(EvaluationProgressed(fraction))

        try:
            report = self.engine.evaluate(model, data, max_tokens, progress, cancel)
        except EvaluationCancelled:
            self.post_message(EvaluationStopped())
            return
        self.post_message(EvaluationCompleted(model.label, report))

    @on(ModelLoaded)
    def _model_loaded(self, event: ModelLoaded) -> None:
        self._model = event.model
        for note in event.model.notes:
            self.notify(note, timeout=6)

    @on(EvaluationProgressed)
    def _progressed(self, event: EvaluationProgressed) -> None:
        self.query_one("#eval-progress", ProgressBar).update(progress=event.fraction)
        self._state(f"evaluating… {event.fraction:.0%}")

    @on(EvaluationCompleted)
    def _evaluated(self, event: EvaluationCompleted) -> None:
        report = event.report
        table = self.query_one("#eval-results", DataTable)
        key = f"result-{table.row_count}"
        table.add_row(Text(event.label), Text(report.data), fmt.count(report.tokens), f"{report.loss:.4f}", f"{report.bpb:.4f}",
                      fmt.duration(report.seconds) if report.seconds >= 1 else f"{report.seconds:.2f}s", "", key=key)
        self._results.append((key, report.bpb))
        best = min(self._results, key=lambda result: result[1])[0]
        for row_key, _ in self._results:
            mark = Text("★ best bpb", style="green") if row_key == best and len(self._results) > 1 else ""
            table.update_cell(row_key, "best", mark, update_width=True)
        table.move_cursor(row=table.row_count - 1)
        self.query_one("#eval-progress", ProgressBar).update(progress=1.0)
        self._done(f"{event.label}: val loss {report.loss:.4f}, {report.bpb:.4f} bits per byte")

    @on(EvaluationStopped)
    def _stopped(self) -> None:
        self._done("cancelled")

    # ------------------------------------------------------------------ samples
    def action_sample(self) -> None:
        entry = self._ready()
        if entry is None:
            return
        count = int(self.query_one("#eval-count", Slider).value)
        self._prompt = self.query_one("#eval-prompt", Input).value
        area = self.query_one("#eval-samples", Horizontal)
        area.remove_children()
        area.mount_all([SampleView(index) for index in range(count)])
        self._cancel = threading.Event()
        self._state(f"sampling {entry.label}…" if self._cached_model(entry) else f"loading {entry.label}…")
        self._sample(entry, self._cached_model(entry), self._prompt, self.query_one(SamplingPanel).values(), count,
                     self._cancel)

    @work(thread=True, exclusive=True, group="eval-samples", exit_on_error=False)
    def _sample(self, entry: CheckpointEntry, model: LoadedModel | None, prompt: str, values: SamplingParams,
                count: int, cancel: threading.Event) -> None:
        if model is None:
            model = self.engine.load_model(entry)
            self.post_message(ModelLoaded(model))
        generator = model.generator
        texts, reasons, tokens = [""] * count, [""] * count, 0
        started = time.perf_counter()
        posted_at = [0.0] * count
        prompts = [generator.encode_prompt(prompt)] * count
        for chunk in generator.generate_batch(prompts, sampling_params(values), cancel):
            texts[chunk.sample] += chunk.text
            tokens += chunk.token_id is not None
            if chunk.finish_reason is not None:
                reasons[chunk.sample] = chunk.finish_reason
            # as in the chat: batched, so the UI thread does not take the interpreter from the generation
            now = time.perf_counter()
            if now - posted_at[chunk.sample] >= POST_EVERY_S:
                posted_at[chunk.sample] = now
                self.post_message(SampleStreamed(chunk.sample, texts[chunk.sample]))
        self.post_message(SamplesCompleted(tuple(texts), tuple(reasons), tokens, time.perf_counter() - started))

    @on(SampleStreamed)
    def _sample_streamed(self, event: SampleStreamed) -> None:
        views = list(self.query(SampleView))
        if event.sample < len(views):
            views[event.sample].show(self._prompt, event.text)

    @on(SamplesCompleted)
    def _sampled(self, event: SamplesCompleted) -> None:
        for view, text, reason in zip(self.query(SampleView), event.texts, event.finish_reasons):
            view.show(self._prompt, text)
            view.border_subtitle = reason
        speed = event.tokens / event.seconds if event.seconds > 0 else 0.0
        self._done(f"{len(event.finish_reasons)} sample(s), {event.tokens} tokens at {speed:.1f} tok/s")

    # ------------------------------------------------------------------ state
    def action_cancel(self) -> None:
        if self._cancel is None:
            return
        self._cancel.set()
        self._state("cancelling…")

    def _state(self, text: str) -> None:
        self.query_one("#eval-state", Static).update(text)

    def _done(self, text: str) -> None:
        self._cancel = None
        self._state(text)

    def worker_failed(self, worker: Worker[object], error: BaseException) -> None:
        if worker.group in JOB_GROUPS:
            self._done("failed")
        super().worker_failed(worker, error)

    def on_unmount(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
