"""The new-run form: a preset, the main hyperparameters, data, processes; checked on every keystroke."""

from __future__ import annotations

from itertools import groupby
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Header, Input, Label, Select, Static
from textual.worker import Worker

from engine.config import DEFAULT_PRESET, Hyperparameters, choices
from engine.runs import RunInfo
from nanogpt_tui.app import error_text
from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.screens.multinode import MultiNodeScreen
from nanogpt_tui.widgets.footer import KeyBar
from nanogpt_tui.screens.run_form import (
    DATA_PATH,
    FIELDS,
    GENERAL,
    NAME,
    NNODES,
    NODE_RANK,
    NPROC,
    RDZV,
    SOURCES,
    FormCheck,
    LaunchPlan,
    check_form,
    config_value,
    summary,
)

# run.device's choices but MPS: a run here is torchrun processes, and device detection knows CUDA and CPUs
DEVICES = tuple(("auto (GPU when present)" if name == "auto" else name, name)
                for name in choices("run.device") if name != "mps")
SHARD_KEYS = ("data.train_files", "data.val_files")


def input_id(key: str) -> str:
    return "in-" + key.replace(".", "--")


class NewRunScreen(AppScreen[RunInfo | None]):
    """Dismisses with the launched run, or None when cancelled."""

    HELP_TITLE = "New run"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "launch", "Launch"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._base: Hyperparameters | None = None
        self._check = FormCheck({GENERAL: "loading"})
        self._existing: set[str] = set()
        self._device: tuple[str, int] | None = None
        self._flops: dict[str, float] = {}
        self._nnodes_launching = 1

    def compose(self) -> ComposeResult:
        presets = self.engine.presets()
        default = self.nanogpt.settings.default_preset or DEFAULT_PRESET
        yield Header()
        with Horizontal(id="form"):
            with VerticalScroll(classes="form-column"):
                yield Static("Run", classes="section")
                yield self._row("Preset", Select([(p, p) for p in presets], value=default if default in presets else presets[0],
                                                 allow_blank=False, compact=True, id="preset"))
                yield self._row("Name", Input(placeholder="automatic", compact=True, id=input_id(NAME)), NAME)
                yield Static("Data", classes="section")
                yield self._row("Source", Select(SOURCES, allow_blank=False, compact=True, id="source"))
                yield self._row("Path", Input(placeholder="file.txt or folder", compact=True, id=input_id(DATA_PATH)), DATA_PATH)
                for key, label in zip(SHARD_KEYS, ("Train shards", "Val shards")):
                    yield self._row(label, Input(compact=True, id=input_id(key)), key)
                yield Static("Processes", classes="section")
                yield self._row("Device", Select(DEVICES, allow_blank=False, compact=True, id="device"))
                yield Static("detecting devices…", id="detected")
                yield self._row("Processes/node", Input("1", compact=True, id=input_id(NPROC)), NPROC)
                yield self._row("Nodes", Input("1", compact=True, id=input_id(NNODES)), NNODES)
                yield self._row("Node rank", Input("0", compact=True, id=input_id(NODE_RANK)), NODE_RANK)
                yield self._row("Rendezvous", Input(placeholder="host:port (several nodes)", compact=True,
                                                    id=input_id(RDZV)), RDZV)
            with VerticalScroll(classes="form-column"):
                for section, fields in groupby(FIELDS, key=lambda f: f.section):
                    yield Static(section, classes="section")
                    for field in fields:
                        yield self._row(field.label, Input(compact=True, id=input_id(field.key)), field.key)
        yield Static("", id="summary")
        yield Static("", id="error-" + input_id(GENERAL), classes="field-error")
        with Horizontal(id="form-buttons"):
            yield Button("Launch", variant="primary", id="launch", disabled=True)
            yield Button("Cancel", id="cancel")
        yield KeyBar()

    def _row(self, label: str, widget: Input | Select[str], key: str | None = None) -> Vertical:
        """Label and input on one line, the reason it is invalid (when it is) below them."""
        line = Horizontal(Label(label, classes="field-label"), widget, classes="field-line")
        if key is None:
            return Vertical(line, classes="field")
        error = Static("", id="error-" + input_id(key), classes="field-error")
        return Vertical(line, error, classes="field", id="row-" + input_id(key))

    def on_mount(self) -> None:
        self._load_preset(self.query_one("#preset", Select).value)
        self._load_names()
        self._detect(str(self.query_one("#device", Select).value))
        self.query_one("#preset", Select).focus()

    @work(thread=True, exit_on_error=False)
    def _load_names(self) -> set[str]:
        return {run.name for run in self.engine.list_runs()}

    @work(thread=True, exclusive=True, group="detect", exit_on_error=False)
    def _detect(self, device: str) -> tuple[str, int]:
        return self.engine.detect_devices(device)

    @work(thread=True, exclusive=True, group="measure", exit_on_error=False)
    def _measure(self, device: str) -> tuple[str, float]:
        return device, self.engine.measure_throughput(device)

    def worker_succeeded(self, worker: Worker[object]) -> None:
        result = worker.result
        if isinstance(result, RunInfo):
            if worker.name == "_create":
                self.app.push_screen(MultiNodeScreen(result.name, self._nnodes_launching), self._multi_node_closed)
            else:
                self.dismiss(result)
            return
        if worker.name == "_load_names" and isinstance(result, set):
            self._existing = result
        elif worker.name == "_detect" and isinstance(result, tuple):
            self._devices_detected(*result)
        elif worker.name == "_measure" and isinstance(result, tuple):
            device, flops = result
            self._flops[device] = flops
        self._validate()

    def _multi_node_closed(self, run: RunInfo | None) -> None:
        # not `self.dismiss` itself: a callback's awaitable is awaited, and dismiss may not be awaited here
        self.dismiss(run)

    def worker_failed(self, worker: Worker[object], error: BaseException) -> None:
        if worker.group == "launch":
            self._show_errors({GENERAL: error_text(error).replace("\n", " — ")})
        else:
            super().worker_failed(worker, error)

    def _devices_detected(self, kind: str, count: int) -> None:
        self._device = (kind, count)
        text = f"{count} CUDA GPU(s) found" if kind == "cuda" else f"no GPU: CPU with {count} core(s)"
        self.query_one("#detected", Static).update(text)
        nproc = self.query_one("#" + input_id(NPROC), Input)
        if kind == "cuda" and nproc.value == "1":
            nproc.value = str(count)
        if kind not in self._flops:
            self._measure(kind)

    def _load_preset(self, name: object) -> None:
        self._base = self.engine.preset(str(name))
        for field in FIELDS:
            self.query_one("#" + input_id(field.key), Input).value = config_value(self._base, field.key)
        for key in SHARD_KEYS:
            self.query_one("#" + input_id(key), Input).value = config_value(self._base, key)
        corpus = self._base.data.corpus
        source = corpus if corpus in ("shakespeare", "shards") else "text"
        self.query_one("#source", Select).value = source
        if source == "text":
            self.query_one("#" + input_id(DATA_PATH), Input).value = corpus
        offered = [name for _, name in DEVICES]
        device = self._base.run.device if self._base.run.device in offered else "auto"
        self.query_one("#device", Select).value = device
        self._validate()

    @on(Select.Changed, "#preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        self._load_preset(event.value)

    @on(Select.Changed, "#device")
    def _device_changed(self, event: Select.Changed) -> None:
        self._detect(str(event.value))

    @on(Select.Changed, "#source")
    @on(Input.Changed)
    def _changed(self) -> None:
        self._validate()

    def _values(self) -> dict[str, str]:
        return {str(i.id).removeprefix("in-").replace("--", "."): i.value for i in self.query(Input)}

    def _validate(self) -> FormCheck:
        if self._base is None:
            return self._check
        source = str(self.query_one("#source", Select).value)
        device = str(self.query_one("#device", Select).value)
        self._check = check_form(self._base, source, device, self._values(), existing=self._existing,
                                 device_count=self._device[1] if self._device else None)
        self._show_errors(self._check.errors)
        self.query_one("#row-" + input_id(DATA_PATH)).display = source == "text"
        for key in SHARD_KEYS:
            self.query_one("#row-" + input_id(key)).display = source == "shards"
        kind = self._device[0] if self._device else None
        self.query_one("#summary", Static).update(summary(self._check, kind, self._flops.get(kind or "")))
        return self._check

    def _show_errors(self, errors: dict[str, str]) -> None:
        for widget in self.query(".field-error"):
            key = str(widget.id).removeprefix("error-in-").replace("--", ".")
            message = errors.get(key, "")
            assert isinstance(widget, Static)
            widget.update(message)
            widget.display = bool(message)
        for field in self.query(Input):
            field.set_class(str(field.id).removeprefix("in-").replace("--", ".") in errors, "-invalid")
        self.query_one("#launch", Button).disabled = bool(errors)

    @on(Button.Pressed, "#launch")
    @on(Input.Submitted)
    def action_launch(self) -> None:
        check = self._validate()
        if check.hp is None or check.plan is None:
            self.notify("Fix the marked fields first.", severity="warning")
            return
        self.query_one("#launch", Button).disabled = True
        self._nnodes_launching = check.plan.nnodes
        if check.plan.nnodes > 1:
            self._create(check.hp, check.plan)
        else:
            self._launch(check.hp, check.plan)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _launch(self, hp: Hyperparameters, plan: LaunchPlan) -> RunInfo:
        return self.engine.create_and_launch(hp, plan.name, nproc=plan.nproc)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _create(self, hp: Hyperparameters, plan: LaunchPlan) -> RunInfo:
        return self.engine.create(hp, plan.name, nproc=plan.nproc, nnodes=plan.nnodes, node_rank=plan.node_rank,
                                  rdzv_endpoint=plan.rdzv_endpoint)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
