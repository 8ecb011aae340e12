"""The runs screen: rows from run directories, states (a dead pid is failed), stop, delete, compare, log."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import DataTable

from nanogpt_tui.screens.compare import CompareScreen
from nanogpt_tui.screens.confirm import ConfirmScreen
from nanogpt_tui.screens.dashboard import DashboardScreen
from nanogpt_tui.screens.log import LogScreen
from nanogpt_tui.screens.runs import RunsScreen
from nanogpt_tui.widgets.loss_plot import LossPlot
from tests.tui.conftest import FIXED_NOW, dead_pid, record_notifications, train_line, wait_for, write_run


def table_rows(app) -> dict[str, dict[str, str]]:
    """Each row of the runs table by run name, its cells by the column header the user sees."""
    table = app.screen.query_one("#runs", DataTable)
    headers = [str(column.label) for column in table.columns.values()]
    return {str(key.value): dict(zip(headers, map(str, table.get_row(key)), strict=True)) for key in table.rows}


async def test_lists_runs_with_their_states(make_app, runs_root: Path) -> None:
    write_run(runs_root, "alive", state="running", steps=12, total=50, pid=os.getpid(), ended_at=None)
    write_run(runs_root, "done", state="finished", steps=50, total=50, val_every=25, created_at=FIXED_NOW - 7000)
    write_run(runs_root, "halted", state="stopped", steps=20, total=50, created_at=FIXED_NOW - 8000)
    write_run(runs_root, "crashed", state="running", steps=3, total=50, pid=dead_pid(), ended_at=None,
              created_at=FIXED_NOW - 9000)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_rows(app)) == 4, what="four rows")
        rows = table_rows(app)
        assert list(rows) == ["alive", "done", "halted", "crashed"], "runs must be listed newest first"
        states = {name: cells["State"] for name, cells in rows.items()}
        assert states == {"alive": "running", "done": "finished", "halted": "stopped", "crashed": "failed"}, \
            "a run whose pid is gone must show as failed"
        assert rows["alive"]["Step"] == "12/50" and rows["done"]["Val"] != "—", "step/total and the val loss belong in the row"
        assert rows["alive"]["Curve"], "each row with train metrics gets a sparkline"
        assert rows["alive"]["Duration"] == "50m00s", "the running duration is measured against the app's clock"


async def test_new_lines_update_the_row(make_app, runs_root: Path) -> None:
    run_dir = write_run(runs_root, "alive", state="running", steps=2, total=50, pid=os.getpid(), ended_at=None)
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: table_rows(app).get("alive", {}).get("Step") == "2/50", what="step 2")
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write(train_line(3) + "\n")
        await wait_for(pilot, lambda: table_rows(app)["alive"]["Step"] == "3/50", what="step 3 from the appended line")


async def test_empty_list_says_how_to_start(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.screen.query_one("#no-runs").display, what="the empty-state hint")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen), "an action without a run must not open anything"


async def test_stop_sends_sigterm_and_the_run_becomes_stopped(make_app, runs_root: Path, fake_trainer) -> None:
    run_dir = write_run(runs_root, "live", state="running", steps=5, total=50, ended_at=None)
    process = fake_trainer(run_dir)
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: table_rows(app).get("live", {}).get("State") == "running", what="running")
        await pilot.press("s")
        await wait_for(pilot, lambda: table_rows(app)["live"]["State"] == "stopped", what="the stopped state")
        assert process.wait(timeout=10) == 0, "the trainer must have exited through its SIGTERM handler"
        assert (run_dir / "stop_requested").exists(), "stop must leave the request marker for the run"


async def test_delete_asks_first(make_app, runs_root: Path) -> None:
    write_run(runs_root, "old", state="finished", steps=3)
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: "old" in table_rows(app), what="the row")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert (runs_root / "old").exists(), "answering no must keep the run"
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: "old" not in table_rows(app), what="the row to go")
        assert not (runs_root / "old").exists()


async def test_delete_of_a_running_run_is_refused(make_app, runs_root: Path) -> None:
    write_run(runs_root, "busy", state="running", steps=3, pid=os.getpid(), ended_at=None)
    app = make_app()
    shown = record_notifications(app)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: "busy" in table_rows(app), what="the row")
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: any("stop it before deleting" in message for message, _ in shown),
                       what="the engine's refusal shown to the user")
        assert (runs_root / "busy").exists()


async def test_resume_relaunches(make_app, engine, runs_root: Path) -> None:
    checkpoints = write_run(runs_root, "paused", state="stopped", steps=3) / "checkpoints"
    checkpoints.mkdir()  # resuming needs a checkpoint; listing it reads only the sidecar
    (checkpoints / "step_000003.pt").write_bytes(b"")
    (checkpoints / "step_000003.json").write_text('{"step": 3}')
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: "paused" in table_rows(app), what="the row")
        await pilot.press("r")
        await wait_for(pilot, lambda: table_rows(app)["paused"]["State"] == "running", what="running again")
        assert engine.launched == [("paused", True)]


async def test_open_dashboard_and_log(make_app, runs_root: Path) -> None:
    write_run(runs_root, "r1", state="finished", steps=4, log="hello from the log\n")
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: "r1" in table_rows(app), what="the row")
        await pilot.press("enter")
        assert isinstance(app.screen, DashboardScreen) and app.screen.run_name == "r1"
        await pilot.press("escape", "l")
        assert isinstance(app.screen, LogScreen)
        log = app.screen.query_one("#full-log")
        await wait_for(pilot, lambda: "hello from the log" in log.lines, what="the log line")


async def test_compare_marked_runs(make_app, runs_root: Path) -> None:
    write_run(runs_root, "a", steps=40, val_every=10)
    write_run(runs_root, "b", steps=20, val_every=5, created_at=FIXED_NOW - 5000)
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: len(table_rows(app)) == 2, what="two rows")
        await pilot.press("c")
        assert isinstance(app.screen, RunsScreen), "comparing needs two marked runs"
        await pilot.press("space", "down", "space")
        assert [cells[""] for cells in table_rows(app).values()] == ["●", "●"]
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        plot = app.screen.query_one(LossPlot)
        await wait_for(pilot, lambda: set(plot.curves) == {"a", "b"}, what="both curves")
        assert plot.curves["a"].tokens[-1] == 40 * 4096 and len(plot.curves["b"].values) == 4


async def test_a_time_budgeted_run_shows_what_ended_it(make_app, runs_root: Path) -> None:
    from engine.runs.protocol import update_status

    update_status(write_run(runs_root, "timed", state="finished", steps=212, total=1000), time_budget_s=180.0)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the run listed")
        assert table_rows(app)["timed"]["Step"] == "212 (time budget)"


async def test_one_odd_folder_does_not_stop_the_listing(make_app, runs_root: Path) -> None:
    write_run(runs_root, "fine")
    write_run(runs_root, "odd name")  # made by hand: not a name the engine accepts
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="both folders listed")
        write_run(runs_root, "later")
        await wait_for(pilot, lambda: table.row_count == 3, what="the listing still refreshing")
