"""After a multi-node run is created: the exact command for every node, and launching this node."""

from __future__ import annotations

import shlex
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static, TextArea
from textual.worker import Worker

from engine.runs import RunInfo
from nanogpt_tui.screens.base import AppScreen


class MultiNodeScreen(AppScreen[RunInfo | None]):
    """Dismisses with the run once this node's part is launched, or None when closed without launching."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, name: str, nnodes: int) -> None:
        super().__init__()
        self._run_name = name
        self._nnodes = nnodes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(f"Run [b]{self._run_name}[/b] is created for {self._nnodes} nodes. Give every node the same "
                         "run folder (same path, e.g. a shared file system) and run there the command of its rank:")
            yield TextArea("", read_only=True, id="commands")
            with Horizontal(classes="buttons"):
                yield Button("Launch this node's part here", variant="primary", id="launch")
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        self._commands()

    @work(thread=True, exit_on_error=False)
    def _commands(self) -> str:
        commands = [shlex.join(self.engine.torchrun_command(self._run_name, node_rank=rank))
                    for rank in range(self._nnodes)]
        return "\n".join(f"# node rank {rank}\n{command}" for rank, command in enumerate(commands))

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        self.query_one("#launch", Button).disabled = True
        self._launch()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _launch(self) -> RunInfo:
        return self.engine.launch(self._run_name)

    def worker_succeeded(self, worker: Worker[object]) -> None:
        if isinstance(worker.result, str):
            self.query_one("#commands", TextArea).text = worker.result
        elif isinstance(worker.result, RunInfo):
            self.dismiss(worker.result)

    def worker_failed(self, worker: Worker[object], error: BaseException) -> None:
        self.query_one("#launch", Button).disabled = False
        super().worker_failed(worker, error)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
