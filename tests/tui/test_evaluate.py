"""The evaluate screen: val loss and bpb of a tiny real model, results kept for comparison, Esc, samples."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select, Static

from nanogpt_tui.app import NanoGPTApp
from nanogpt_tui.messages.generation import POST_EVERY_S
from nanogpt_tui.model_service import EvaluationCancelled, LoadedModel
from nanogpt_tui.screens.checkpoints import open_checkpoint_in
from nanogpt_tui.screens.evaluate import EvaluateScreen, SampleView
from engine.settings import Settings
from nanogpt_tui.widgets.slider import Slider
from tests.tui.conftest import FIXED_NOW, FakeEngine, record_notifications, rows_by_header, wait_for
from tests.tui.model_fixtures import (
    FixedEvalEngine,
    ScriptedEngine,
    ScriptedGenerator,
    entry_for,
    save_tiny_checkpoint,
)


def results(screen: EvaluateScreen) -> list[dict[str, str]]:
    return rows_by_header(screen.query_one("#eval-results", DataTable))


def state(screen: EvaluateScreen) -> str:
    return str(screen.query_one("#eval-state", Static).render())


async def open_evaluate(pilot, path: Path) -> EvaluateScreen:
    await open_checkpoint_in(pilot.app, "evaluate", entry_for(path))
    screen = pilot.app.screen
    assert isinstance(screen, EvaluateScreen)
    return screen


async def test_val_loss_and_bpb_of_two_tiny_models_side_by_side(runs_root: Path) -> None:
    first = save_tiny_checkpoint(runs_root, "tiny", step=10, seed=0)
    second = save_tiny_checkpoint(runs_root, "tiny", step=20, seed=1)
    app = NanoGPTApp(FakeEngine(runs_root), Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_evaluate(pilot, first)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(results(screen)) == 1, timeout=60, what="the first result")
        row = results(screen)[0]
        loss, bpb = float(row["Val loss"]), float(row["Val bpb"])
        assert row["Checkpoint"] == "tiny @ 10" and "held-out" in row["Data"], row
        assert math.isfinite(loss) and 0 < loss < 10 and math.isfinite(bpb) and bpb > 0, row
        assert "bits per byte" in state(screen)
        await open_checkpoint_in(app, "evaluate", entry_for(second))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(results(screen)) == 2, timeout=60, what="the second result")
        table = results(screen)
        assert [r["Checkpoint"] for r in table] == ["tiny @ 10", "tiny @ 20"], "earlier results stay for comparison"
        best = min(table, key=lambda r: float(r["Val bpb"]))
        assert best[""] == "★ best bpb" and sum(r[""] != "" for r in table) == 1, table


async def test_shakespeare_and_missing_file_data(runs_root: Path, tmp_path: Path) -> None:
    path = save_tiny_checkpoint(runs_root, "tiny")
    app = NanoGPTApp(FakeEngine(runs_root), Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        shown = record_notifications(app)
        screen = await open_evaluate(pilot, path)
        screen.query_one("#eval-data", Select).value = "path"
        screen.query_one("#eval-path", Input).value = str(tmp_path / "missing.txt")
        screen.query_one("#eval-max-tokens", Input).value = "200"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: state(screen) == "failed", timeout=60, what="the data error")
        assert any("does not exist" in message for message, _ in shown), shown
        text = tmp_path / "verse.txt"
        text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 4)
        screen.query_one("#eval-path", Input).value = str(text)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(results(screen)) == 1, timeout=60, what="the text file's result")
        assert str(text) in results(screen)[0]["Data"]


class SlowEvalEngine(ScriptedEngine):
    """Evaluation that reports progress until it is cancelled."""

    def evaluate(self, model: LoadedModel, data: str | None, max_tokens: int,
                 progress: Callable[[float], None], cancel: threading.Event) -> object:
        for step in range(2000):
            if cancel.is_set():
                raise EvaluationCancelled
            progress(step / 2000)
            time.sleep(0.005)
        raise AssertionError("the evaluation was never cancelled")


async def test_escape_cancels_an_evaluation(runs_root: Path) -> None:
    path = save_tiny_checkpoint(runs_root, "tiny")
    engine = SlowEvalEngine(runs_root, ScriptedGenerator(["x"]))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_evaluate(pilot, path)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "evaluating…" in state(screen), what="progress")
        await pilot.press("escape")
        await wait_for(pilot, lambda: state(screen) == "cancelled", what="the cancel")
        assert results(screen) == [], "a cancelled evaluation adds no result"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "evaluating…" in state(screen), what="the next evaluation: the screen is ready")
        await pilot.press("escape")
        await wait_for(pilot, lambda: state(screen) == "cancelled", what="the second cancel")


async def test_samples_stream_side_by_side(runs_root: Path) -> None:
    path = save_tiny_checkpoint(runs_root, "tiny")
    gate = threading.Semaphore(0)
    engine = ScriptedEngine(runs_root, ScriptedGenerator(["Once", " upon", " a", " time"], gate=gate))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_evaluate(pilot, path)
        screen.query_one("#eval-count", Slider).value = 3
        screen.query_one("#eval-prompt", Input).value = "Tell me: "
        screen.query_one("#temperature", Slider).value = 0.3
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(screen.query(SampleView)) == 3, what="three sample panes")
        for _ in range(2):  # slower than the app batches tokens for the screen
            gate.release()
            await pilot.pause(POST_EVERY_S * 2.5)
        views = list(screen.query(SampleView))
        await wait_for(pilot, lambda: str(views[1].render()) == "Tell me: ONCE UPON", what="two tokens in sample 2")
        gate.release(2)
        await wait_for(pilot, lambda: "tok/s" in state(screen), what="the samples to end")
        assert [str(view.render()) for view in views] == ["Tell me: Once upon a time", "Tell me: ONCE UPON A TIME",
                                                          "Tell me: ONCE UPON A TIME"]
        prompts, params = engine.generator.calls[-1]
        assert len(prompts) == 3 and params.temperature == 0.3, "one batch of three with the slider's temperature"


async def test_nothing_chosen_says_how_to_choose(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen), what="the evaluate screen")
        shown = record_notifications(app)
        await pilot.press("ctrl+r")
        assert shown == [("Choose a checkpoint first (ctrl+o).", "warning")]


def test_snapshot(snap_compare, runs_root: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(isolated_home)
    first = save_tiny_checkpoint(runs_root, "tiny", step=10, corpus="shakespeare")
    second = save_tiny_checkpoint(runs_root, "tiny", step=20, corpus="shakespeare")
    engine = FixedEvalEngine(runs_root, ScriptedGenerator(["Once", " upon", " a", " time", "."]))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)

    async def compared(pilot) -> None:
        screen = await open_evaluate(pilot, first)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(results(screen)) == 1, what="the first result")
        await open_checkpoint_in(pilot.app, "evaluate", entry_for(second))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(results(screen)) == 2, what="the second result")
        screen.query_one("#eval-prompt", Input).value = "ROMEO: "
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "sample(s)" in state(screen), what="the samples")
        # the measured tok/s would change the picture on every run
        screen.query_one("#eval-state", Static).update("2 sample(s) done")

    assert snap_compare(app, terminal_size=(120, 40), run_before=compared)


def test_local_evaluation_stops_when_cancelled(runs_root: Path) -> None:
    path = save_tiny_checkpoint(runs_root, "tiny")
    engine = FakeEngine(runs_root)
    model = engine.load_model(entry_for(path))
    cancel = threading.Event()
    seen: list[float] = []
    report = engine.evaluate(model, None, 0, seen.append, cancel)
    assert seen and seen[-1] == 1.0 and report.tokens > 0, "progress reaches 1 on a full evaluation"
    cancel.set()
    with pytest.raises(EvaluationCancelled):
        engine.evaluate(model, None, 0, seen.append, cancel)
