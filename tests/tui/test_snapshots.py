"""Snapshots at 120x40 of the runs screen, the new-run form and the dashboard, from fixed run directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from nanogpt_tui.screens.dashboard import DashboardScreen
from tests.tui.conftest import FIXED_NOW, dead_pid, wait_for, write_run

SIZE = (120, 40)
LOG = "".join(f"step {step:4d}/600 loss {8.0 * 0.97**step + 1.5:.4f}\n" for step in range(1, 61))


@pytest.fixture
def runs(runs_root: Path, utc: None) -> Path:
    write_run(runs_root, "shakespeare-live", state="running", steps=60, total=600, val_every=20, pid=os.getpid(),
              started_at=FIXED_NOW - 60, ended_at=None, sample="ROMEO:\nWhat light through yonder window breaks?", log=LOG)
    write_run(runs_root, "shakespeare-done", state="finished", steps=100, total=100, val_every=25,
              created_at=FIXED_NOW - 7200, started_at=FIXED_NOW - 7100, ended_at=FIXED_NOW - 6500)
    write_run(runs_root, "tiny-stopped", state="stopped", steps=40, total=600, created_at=FIXED_NOW - 9000,
              started_at=FIXED_NOW - 8900, ended_at=FIXED_NOW - 8700)
    write_run(runs_root, "crashed", state="running", steps=8, total=600, pid=dead_pid(), ended_at=None,
              created_at=FIXED_NOW - 10000, started_at=FIXED_NOW - 9900)
    return runs_root


def test_runs_screen(snap_compare, make_app, runs: Path) -> None:
    async def rows_shown(pilot) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs", DataTable).row_count == 4, what="rows")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=rows_shown)


def test_new_run_form(snap_compare, make_app, runs: Path) -> None:
    async def form_checked(pilot) -> None:
        await pilot.press("n")
        await wait_for(pilot, lambda: "on cpu" in str(pilot.app.screen.query_one("#summary", Static).render()),
                       what="the measured time in the summary")
        pilot.app.screen.query_one("#in-train--num_iterations").value = "0"
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=form_checked)


def test_dashboard(snap_compare, make_app, runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nanogpt_tui.screens import dashboard
    from nanogpt_tui.gpu import NO_GPU

    monkeypatch.setattr(dashboard, "read_gpu_stats", lambda: NO_GPU)  # the same screen on hosts with and without GPUs

    async def followed(pilot) -> None:
        await pilot.app.push_screen(DashboardScreen("shakespeare-live"))
        await wait_for(pilot, lambda: "step 60/600" in str(pilot.app.screen.query_one("#eta", Static).render())
                       and "running" in str(pilot.app.screen.query_one("#run-title", Static).render())
                       and "step   60" in "\n".join(pilot.app.screen.query_one("#log-tail").lines),
                       what="metrics, status and log")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=followed)
