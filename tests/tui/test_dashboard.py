"""The dashboard follows metrics.jsonl incrementally, shows the end of a run, and survives re-attaching."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from textual.widgets import DataTable, ProgressBar, Static

from nanogpt_tui.screens.dashboard import DashboardScreen
from nanogpt_tui.widgets.log_tail import LogTail
from nanogpt_tui.widgets.loss_plot import LossPlot
from tests.tui.conftest import FIXED_NOW, record_notifications, train_line, val_line, wait_for, write_run


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def open_dashboard(app, pilot, name: str) -> DashboardScreen:
    app.push_screen(DashboardScreen(name))
    await pilot.pause()
    assert isinstance(app.screen, DashboardScreen)
    return app.screen


async def test_picks_up_appended_lines(make_app, runs_root: Path) -> None:
    run_dir = write_run(runs_root, "live", state="running", steps=10, total=100, pid=os.getpid(), ended_at=None,
                        started_at=FIXED_NOW - 30)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dashboard(app, pilot, "live")
        await wait_for(pilot, lambda: "step 10/100" in text_of(app, "#eta"), what="step 10")
        assert "ETA 18s" in text_of(app, "#eta"), "90 steps left at 200 ms, well inside the 180 s budget"
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write("".join(train_line(step) + "\n" for step in range(11, 16)))
            handle.write(val_line(15) + "\n")
            handle.write('{"t": 1, "step": 16, "kind": "tr')  # a torn line still being written
        await wait_for(pilot, lambda: "step 15/100" in text_of(app, "#eta"), what="step 15")
        assert f"loss  {8.0 * 0.97**15 + 1.5:.3f}" in text_of(app, "#stats")
        bar = app.screen.query_one(ProgressBar)
        assert bar.percentage == pytest.approx(30 / 180, abs=1e-3), "30 s of the 180 s budget is ahead of 15/100 steps"
        plot = screen.query_one(LossPlot)
        assert plot.curves["train"].steps[-1] == 15 and plot.curves["val"].steps == (15,)
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write('ain", "loss": 2.0, "tokens": 1}\n')
        await wait_for(pilot, lambda: plot.curves["train"].steps[-1] == 16, what="the completed torn line")


async def test_time_budget_caps_the_eta(make_app, runs_root: Path) -> None:
    write_run(runs_root, "budget", state="running", steps=10, total=100, pid=os.getpid(), ended_at=None,
              started_at=FIXED_NOW - 170)
    app = make_app()
    async with app.run_test() as pilot:
        await open_dashboard(app, pilot, "budget")
        await wait_for(pilot, lambda: "ETA 10s" in text_of(app, "#eta"), what="the 180 s budget's last 10 s")


async def test_failed_run_shows_why(make_app, runs_root: Path) -> None:
    log = "step 1 loss 5.0\nTraceback (most recent call last):\nRuntimeError: out of memory\n"
    write_run(runs_root, "broken", state="failed", steps=1, message="exit code 1", log=log)
    app = make_app()
    async with app.run_test() as pilot:
        await open_dashboard(app, pilot, "broken")
        await wait_for(pilot, lambda: "RuntimeError: out of memory" in text_of(app, "#outcome"),
                       what="the last log lines in the outcome")
        assert text_of(app, "#outcome").startswith("Failed: exit code 1")
        assert app.screen.query_one("#outcome").has_class("failed")


async def test_finished_and_sample(make_app, runs_root: Path) -> None:
    write_run(runs_root, "done", state="finished", steps=20, total=20, sample="ROMEO: hi")
    app = make_app()
    async with app.run_test() as pilot:
        await open_dashboard(app, pilot, "done")
        await wait_for(pilot, lambda: "Finished at step 20" in text_of(app, "#outcome"), what="finished")
        assert "ROMEO: hi" in text_of(app, "#sample") and "ETA —" in text_of(app, "#eta")


async def test_plot_toggles(make_app, runs_root: Path) -> None:
    write_run(runs_root, "r", steps=5)
    app = make_app()
    async with app.run_test() as pilot:
        screen = await open_dashboard(app, pilot, "r")
        plot = screen.query_one(LossPlot)
        await pilot.press("x", "g", "m")
        assert (plot.by_tokens, plot.log_scale, plot.smooth) == (True, True, True)
        log = screen.query_one(LogTail)
        await pilot.press("f")
        assert log.auto_scroll is False
        await pilot.press("escape")
        assert not isinstance(app.screen, DashboardScreen)


async def test_stop_from_the_dashboard(make_app, runs_root: Path, fake_trainer) -> None:
    run_dir = write_run(runs_root, "live", state="running", steps=5, total=50, ended_at=None)
    fake_trainer(run_dir)
    app = make_app()
    async with app.run_test() as pilot:
        await open_dashboard(app, pilot, "live")
        await wait_for(pilot, lambda: "running" in text_of(app, "#run-title"), what="running")
        await pilot.press("s")
        await wait_for(pilot, lambda: "stopped" in text_of(app, "#run-title"), what="stopped")
        assert "press r to resume" in text_of(app, "#outcome")


async def test_reattach_after_the_app_closed(make_app, runs_root: Path) -> None:
    run_dir = write_run(runs_root, "long", state="running", steps=30, total=100, val_every=10, pid=os.getpid(),
                        ended_at=None)
    first = make_app()
    async with first.run_test() as pilot:
        await open_dashboard(first, pilot, "long")
        await wait_for(pilot, lambda: "step 30/100" in text_of(first, "#eta"), what="step 30")
    with open(run_dir / "metrics.jsonl", "a") as handle:  # the run kept training while no app was open
        handle.write("".join(train_line(step) + "\n" for step in range(31, 41)))
    second = make_app()
    async with second.run_test() as pilot:
        # Enter opens the highlighted row: wait until the runs table has one (a loaded host is slow to list)
        await wait_for(pilot, lambda: second.screen.query_one("#runs", DataTable).row_count > 0, what="the run's row")
        await pilot.press("enter")
        assert isinstance(second.screen, DashboardScreen)
        plot = second.screen.query_one(LossPlot)
        await wait_for(pilot, lambda: "train" in plot.curves and plot.curves["train"].steps[-1] == 40,
                       what="the curve up to step 40")
        assert plot.curves["train"].steps[0] == 1, "the re-attached curve must start at the first step"
        assert "running" in text_of(second, "#run-title")


async def test_a_failed_checkpoint_write_is_reported(make_app, runs_root: Path) -> None:
    run_dir = write_run(runs_root, "diskfull", state="running", steps=5, total=100, pid=os.getpid(), ended_at=None,
                        started_at=FIXED_NOW - 30)
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"t": 1, "step": 5, "kind": "status", "state": "running", '
                     '"message": "checkpoint failed: could not write checkpoint: No space left on device"}\n')
    app = make_app()
    shown = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_dashboard(app, pilot, "diskfull")
        await wait_for(pilot, lambda: any("No space left" in message for message, _ in shown),
                       what="the disk-full warning")


async def test_following_survives_the_run_being_deleted_by_another_viewer(make_app, runs_root: Path) -> None:
    import shutil

    write_run(runs_root, "flaky", state="finished", steps=5, total=5)
    app = make_app()
    async with app.run_test() as pilot:
        await open_dashboard(app, pilot, "flaky")
        await wait_for(pilot, lambda: "Finished at step 5" in text_of(app, "#outcome"), what="the finished run")
        shutil.rmtree(runs_root / "flaky")
        await wait_for(pilot, lambda: "no run named 'flaky'" in text_of(app, "#outcome"), what="the deletion shown")
        write_run(runs_root, "flaky", state="finished", steps=9, total=9)
        await wait_for(pilot, lambda: "Finished at step 9" in text_of(app, "#outcome"),
                       what="the dashboard still following after an error")


async def test_time_budget_run_finishes_at_full_progress(make_app, runs_root: Path) -> None:
    import json

    from engine.runs.protocol import update_status

    run_dir = write_run(runs_root, "timed", state="finished", steps=212, total=1000)
    update_status(run_dir, time_budget_s=180.0, progress=1.0)
    app = make_app()
    async with app.run_test() as pilot:
        await open_dashboard(app, pilot, "timed")
        await wait_for(pilot, lambda: "Finished at step 212" in text_of(app, "#outcome"), what="the finished run")
        assert app.screen.query_one(ProgressBar).percentage == pytest.approx(1.0), "a finished run shows 100 %"
        assert "time budget" in text_of(app, "#outcome")
    assert json.loads((run_dir / "status.json").read_text())["step"] == 212


async def test_the_state_shows_even_when_a_long_name_is_cut(make_app, runs_root: Path) -> None:
    name = "shakespeare-cpu-ft-20261202-044100"
    write_run(runs_root, name, state="finished", steps=5, total=5)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_dashboard(app, pilot, name)
        await wait_for(pilot, lambda: name in text_of(app, "#run-title"), what="the title")
        title = app.screen.query_one("#run-title", Static)
        visible = text_of(app, "#run-title")[: title.content_region.width]
        assert "finished" in visible, f"the state is cut off the title: {visible!r}"
