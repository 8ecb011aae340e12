"""The runs screen: every run directory as a table row, refreshed from disk, with the actions on runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Header, Static
from textual.worker import Worker

from nanogpt_tui.messages.runs import PollFailed, RunRow, RunsListed
from nanogpt_tui.screens.base import RUN_ACTION, AppScreen
from nanogpt_tui.polling import poll
from nanogpt_tui.screens.confirm import ConfirmScreen
from nanogpt_tui import format as fmt
from nanogpt_tui.widgets.footer import KeyBar
from nanogpt_tui.widgets.nav import NavTabs
from nanogpt_tui.series import is_number, sparkline

if TYPE_CHECKING:
    from engine.runs import RunInfo

REFRESH_S = 2.0
SPARK_WIDTH = 8
COLUMNS = ("", "Name", "Kind", "Preset", "State", "Step", "Loss", "Val", "Tok/s", "Started", "Duration", "Curve")
MARK = "●"


class RunsScreen(AppScreen[None]):
    """All runs, newest first; Enter opens a run's dashboard."""

    HELP_TITLE = "Runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "open_run", "Open", key_display="o/enter"),
        Binding("n", "new_run", "New run"),
        Binding("s", "stop_run", "Stop"),
        Binding("r", "resume_run", "Resume"),
        Binding("d", "delete_run", "Delete"),
        Binding("l", "open_log", "Log"),
        Binding("space", "toggle_mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[str, RunInfo] = {}
        self._shown: list[tuple[str, tuple[object, ...]]] = []
        self._rows: tuple[RunRow, ...] = ()
        self._marked: set[str] = set()
        self._poll_error = ""  # the last polling problem shown, so it is shown once

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavTabs("runs")
        table: DataTable[object] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static("No runs yet. Press n to launch one.", id="no-runs")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#runs", DataTable).focus()

    def on_screen_resume(self) -> None:
        # the first read imports the engine's modules; the first frame does not wait for it
        self.call_after_refresh(self.refresh_runs)

    def on_screen_suspend(self) -> None:
        """Another screen covers this one: stop reading the run directories until it comes back."""
        self.workers.cancel_group(self, "runs-refresh")

    def refresh_runs(self) -> None:
        """Read the run directories now, then every REFRESH_S seconds."""
        self._poll_runs()

    @work(thread=True, exclusive=True, group="runs-refresh", exit_on_error=False)
    def _poll_runs(self) -> None:
        from engine.metrics import MetricsReader
        from engine.runs.protocol import METRICS_FILE

        engine = self.engine
        readers: dict[str, MetricsReader] = {}
        losses: dict[str, list[float]] = {}

        def tick() -> None:
            runs = engine.list_runs()
            for gone in set(readers) - {run.name for run in runs}:
                del readers[gone], losses[gone]
            rows = []
            for run in runs:
                if run.name not in readers:
                    readers[run.name] = MetricsReader(run.path / METRICS_FILE)
                    losses[run.name] = []
                events = readers[run.name].read_new()
                losses[run.name].extend(e["loss"] for e in events if e["kind"] == "train" and is_number(e.get("loss")))
                rows.append(RunRow(run, sparkline(losses[run.name], SPARK_WIDTH)))
            self.post_message(RunsListed(tuple(rows)))

        poll(REFRESH_S, tick, lambda err: self.post_message(PollFailed(err)))

    @on(PollFailed)
    def _poll_failed(self, event: PollFailed) -> None:
        from nanogpt_tui.app import error_text  # the app imports this screen

        text = error_text(event.error)
        if text != self._poll_error:  # once per distinct problem, not every second
            self._poll_error = text
            self.notify(f"Cannot read the runs folder now (retrying): {text}", severity="warning", timeout=6)

    @on(RunsListed)
    def _show_runs(self, event: RunsListed) -> None:
        self._poll_error = ""
        self._rows = event.rows
        self._render_rows()
        self.notify_file_problems(f"{row.info.name}/{problem}" for row in event.rows for problem in row.info.problems)

    def _render_rows(self) -> None:
        now = self.nanogpt.clock()
        shown = [(row.info.name, self._cells(row, now)) for row in self._rows]
        self._runs = {row.info.name: row.info for row in self._rows}
        self.query_one("#no-runs").display = not shown
        if shown == self._shown:
            return
        self._shown = shown
        table = self.query_one("#runs", DataTable)
        selected = self._selected_name()
        # explicit widths: DataTable's own sizing happens after a first render it keeps in its cache
        table.clear(columns=True)
        for index, label in enumerate(COLUMNS):
            table.add_column(label, width=max(cell_len(str(cells[index])) for _, cells in [("", COLUMNS), *shown]))
        for name, cells in shown:
            table.add_row(*cells, key=name)
        names = [name for name, _ in shown]
        if selected in names:
            table.move_cursor(row=names.index(selected), animate=False)

    def _cells(self, row: RunRow, now: float) -> tuple[object, ...]:
        run = row.info
        return (
            MARK if run.name in self._marked else "",
            run.name,
            run.kind,
            Text(run.preset),  # from run.json: a str cell would be read as markup
            Text(run.state, style=fmt.STATE_STYLES.get(run.state, "")),
            run.steps_label,
            fmt.loss(run.last_loss),
            fmt.loss(run.last_val_loss),
            fmt.rate(run.tokens_per_s),
            fmt.started(run.started_at),
            fmt.run_duration(run.started_at, run.ended_at, run.state == "running", now),
            row.sparkline,
        )

    def _selected_name(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return row_key.value

    def _selected(self) -> RunInfo | None:
        name = self._selected_name()
        if name is None:
            self.notify("There is no run yet: press n to launch one.", severity="warning")
            return None
        return self._runs[name]

    @on(DataTable.RowSelected)
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        from nanogpt_tui.screens.dashboard import DashboardScreen

        run = self._selected()
        if run is not None:
            self.app.push_screen(DashboardScreen(run.name))

    def action_open_log(self) -> None:
        from nanogpt_tui.screens.log import LogScreen

        run = self._selected()
        if run is not None:
            self.app.push_screen(LogScreen(run.name))

    def action_new_run(self) -> None:
        from nanogpt_tui.screens.dashboard import DashboardScreen
        from nanogpt_tui.screens.new_run import NewRunScreen

        def launched(run: RunInfo | None) -> None:
            self.refresh_runs()
            if run is not None:
                self.app.push_screen(DashboardScreen(run.name))

        self.app.push_screen(NewRunScreen(), launched)

    def action_stop_run(self) -> None:
        run = self._selected()
        if run is None:
            return
        if run.state != "running":
            self.notify(f"{run.name} is not running ({run.state}).", severity="warning")
            return
        self.run_engine_action("stop requested: the run saves a checkpoint and stops", run.name, self.engine.stop)

    def action_resume_run(self) -> None:
        run = self._selected()
        if run is None:
            return
        if run.state == "running":
            self.notify(f"{run.name} is already running.", severity="warning")
            return
        self.resume_run(run.name, run.state)

    def action_delete_run(self) -> None:
        run = self._selected()
        if run is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._marked.discard(run.name)
                self.run_engine_action("deleted", run.name, self.engine.delete)

        question = f"Delete run [b]{run.name}[/b] with its checkpoints and logs?\nThis cannot be undone."
        self.app.push_screen(ConfirmScreen(question, "Delete"), answered)

    def action_toggle_mark(self) -> None:
        run = self._selected()
        if run is not None:
            self._marked ^= {run.name}
            self._render_rows()

    def action_compare(self) -> None:
        from nanogpt_tui.screens.compare import CompareScreen

        names = [row.info.name for row in self._rows if row.info.name in self._marked]
        if len(names) < 2:
            self.notify("Mark two or more runs with space first.", severity="warning")
            return
        self.app.push_screen(CompareScreen(names))

    def worker_succeeded(self, worker: Worker[object]) -> None:
        super().worker_succeeded(worker)
        if worker.group == RUN_ACTION:
            self.refresh_runs()
