"""The new-run form: invalid values are marked in place and block launching; a valid form launches."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Select, Static, TextArea

from nanogpt_tui.app import LocalEngine, NanoGPTApp
from nanogpt_tui.screens.dashboard import DashboardScreen
from nanogpt_tui.screens.multinode import MultiNodeScreen
from nanogpt_tui.screens.new_run import NewRunScreen, input_id
from engine.settings import Settings
from nanogpt_tui.widgets.loss_plot import LossPlot
from tests.tui.conftest import form_errors, wait_for


def field(app, key: str) -> Input:
    return app.screen.query_one("#" + input_id(key), Input)


def error_of(app, key: str) -> str:
    return str(app.screen.query_one("#error-" + input_id(key), Static).render())


async def open_form(app, pilot) -> NewRunScreen:
    await pilot.press("n")
    assert isinstance(app.screen, NewRunScreen)
    await wait_for(pilot, lambda: "parameters" in str(app.screen.query_one("#summary", Static).render()),
                   what="the summary line")
    return app.screen


async def test_invalid_values_are_marked_and_block_launch(make_app, engine) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_form(app, pilot)
        field(app, "train.num_iterations").value = "many"
        field(app, "model.num_layers").value = "8"
        await pilot.pause()
        assert error_of(app, "train.num_iterations") == "must be a whole number"
        assert field(app, "train.num_iterations").has_class("-invalid")
        assert app.screen.query_one("#launch", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, NewRunScreen) and engine.launched == [], "an invalid form must not launch"
        field(app, "train.num_iterations").value = "40"
        await pilot.pause()
        assert "one letter L or S per layer (8)" in error_of(app, "model.window_pattern")
        field(app, "model.window_pattern").value = "LSSLLSSL"
        await pilot.pause()
        assert not app.screen.query_one("#launch", Button).disabled
        assert not app.screen.query(".field-error").filter(".-invalid")


async def test_valid_form_launches_and_opens_the_dashboard(make_app, engine) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_form(app, pilot)
        field(app, "name").value = "first"
        field(app, "train.num_iterations").value = "25"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        assert engine.launched == [("first", False)]
        assert engine.manager.config("first").train.num_iterations == 25, "the edited value must reach config.toml"


async def test_existing_name_and_preset_switch(make_app, engine) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_form(app, pilot)
        field(app, "name").value = "dup"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the first launch")
        await pilot.press("escape")
        await open_form(app, pilot)
        field(app, "name").value = "dup"
        # the form learns the existing names in a worker: the error shows once they are known
        await wait_for(pilot, lambda: error_of(app, "name") == "a run with this name exists",
                       what="the existing name marked")
        app.screen.query_one("#preset", Select).value = "speedrun-124m"
        await pilot.pause()
        assert field(app, "model.model_dim").value == "768"
        assert app.screen.query_one("#source", Select).value == "shards"
        assert "no .bin shards match" in error_of(app, "data.train_files")


async def test_cancel_returns_to_the_runs(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await open_form(app, pilot)
        await pilot.press("escape")
        assert not isinstance(app.screen, NewRunScreen)


@pytest.mark.slow
async def test_real_tiny_cpu_run_launched_through_the_form(runs_root: Path) -> None:
    if importlib.util.find_spec("engine.pretraining") is None:
        pytest.skip("engine.pretraining is not importable yet")
    engine = LocalEngine(runs_root)
    app = NanoGPTApp(engine, Settings())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_form(app, pilot)
        app.screen.query_one("#device", Select).value = "cpu"
        for key, value in {"name": "tiny", "model.num_layers": "2", "model.num_heads": "1", "model.head_dim": "32",
                           "model.model_dim": "32", "model.window_pattern": "LS", "model.num_value_embeds": "1",
                           "train.num_iterations": "4", "train.batch_size": "2", "train.micro_batch_size": "2",
                           "train.train_seq_len": "64", "run.val_every": "2", "run.checkpoint_every": "0",
                           "run.sample_every": "0"}.items():
            field(app, key).value = value
        await pilot.pause()
        assert form_errors(app.screen) == {} and not app.screen.query_one("#launch", Button).disabled, \
            form_errors(app.screen)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=120, what="the dashboard")
        await wait_for(pilot, lambda: "finished" in str(app.screen.query_one("#run-title", Static).render()),
                       timeout=300, what="the run to finish")
        curves = app.screen.query_one(LossPlot).curves
        assert "train" in curves and curves["train"].steps[-1] == 4, "the dashboard plots the run's 4 steps"


async def test_multi_node_shows_every_node_command_then_launches_here(make_app, engine) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_form(app, pilot)
        app.screen.query_one("#device", Select).value = "cpu"
        for key, value in {"name": "wide", "nnodes": "2", "node_rank": "0", "rdzv_endpoint": "10.0.0.1:29500",
                           "train.micro_batch_size": "8"}.items():
            field(app, key).value = value
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, MultiNodeScreen), what="the multi-node commands")
        commands = app.screen.query_one("#commands", TextArea)
        await wait_for(pilot, lambda: "--node-rank=1" in commands.text, what="the command of node 1")
        assert "--node-rank=0" in commands.text and "--rdzv-endpoint=10.0.0.1:29500" in commands.text
        assert engine.launched == [], "creating a multi-node run must not start it before the user asks"
        await pilot.click("#launch")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        assert engine.launched == [("wide", False)]
