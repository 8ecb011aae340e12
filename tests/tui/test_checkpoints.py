"""The checkpoints screen: rows from sidecars (weights never read), details, delete, copy, import, fine-tune, open."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from engine.data.conversations import read_conversations
from nanogpt_tui.app import NanoGPTApp
from nanogpt_tui.screens.chat import ChatScreen
from nanogpt_tui.screens.checkpoints import CheckpointsScreen
from nanogpt_tui.screens.confirm import ConfirmScreen
from nanogpt_tui.screens.dashboard import DashboardScreen
from nanogpt_tui.screens.evaluate import EvaluateScreen
from nanogpt_tui.screens.finetune_form import FinetuneFormScreen, parse_settings
from nanogpt_tui.screens.import_form import ImportFormScreen, path_problem
from engine.settings import Settings
from nanogpt_tui.widgets.slider import Slider
from nanogpt_tui.widgets.path_input import display_path
from tests.tui.conftest import FIXED_NOW, FakeEngine, dead_pid, rows_by_header, wait_for
from tests.tui.model_fixtures import (
    FixedEvalEngine,
    ScriptedEngine,
    ScriptedGenerator,
    chat_shows,
    save_tiny_checkpoint,
)

CONVERSATIONS = {"conversations": [
    {"messages": [{"role": "user", "content": f"Question {n}?"}, {"role": "assistant", "content": f"Answer {n}."}]}
    for n in range(6)
]}


def rows(app: NanoGPTApp) -> list[dict[str, str]]:
    return rows_by_header(app.screen.query_one("#checkpoints", DataTable))


def highlighted(app: NanoGPTApp) -> Path:
    """The checkpoint under the table's cursor (its rows are keyed by path)."""
    table = app.screen.query_one("#checkpoints", DataTable)
    return Path(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))


@pytest.fixture
def checkpoints(runs_root: Path) -> dict[str, Path]:
    shakespeare = {"corpus": "shakespeare"}  # the config pane then shows no temporary path
    base10 = save_tiny_checkpoint(runs_root, "base", step=10, val_loss=6.0, created_at=FIXED_NOW - 9000, **shakespeare)
    base20 = save_tiny_checkpoint(runs_root, "base", step=20, val_loss=5.0, created_at=FIXED_NOW - 9000, **shakespeare)
    sft = save_tiny_checkpoint(runs_root, "base-sft", step=4, kind="finetune", parent=str(base20),
                               val_loss=3.2, val_bpb=1.4, created_at=FIXED_NOW - 5000, **shakespeare)
    imported = save_tiny_checkpoint(runs_root, "import-seed", step=3000, kind="import", parent="/old/state_step003000.pt",
                                    val_loss=3.3, val_bpb=1.0, created_at=FIXED_NOW - 7000, **shakespeare)
    return {"base10": base10, "base20": base20, "sft": sft, "imported": imported}


async def show_checkpoints(pilot, count: int) -> None:
    await pilot.press("2")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CheckpointsScreen) and len(rows(pilot.app)) == count,
                   what=f"{count} checkpoint rows")


async def test_rows_come_from_sidecars_without_loading_weights(make_app, checkpoints: dict[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def no_weights(*args: object, **kwargs: object) -> None:
        raise AssertionError("listing checkpoints must not load weights")

    monkeypatch.setattr(torch, "load", no_weights)
    for path in checkpoints.values():
        path.write_bytes(b"not weights")  # a listing that opened these would fail
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 4)
        table = rows(app)
        by_run = [(r["Run"], r["Kind"], r["Step"]) for r in table]
        assert ("base", "pretrain", "10") in by_run and ("", "pretrain", "20") in by_run, \
            "a run's checkpoints are grouped: its name on the first row only"
        assert ("import-seed", "import", "3000") in by_run, "imported checkpoints are listed like runs"
        sft = next(r for r in table if r["Run"] == "base-sft")
        assert sft["Kind"] == "finetune" and sft["Parent"] == "base/step_000020.pt", "a fine-tune names its parent"
        base20 = next(r for r in table if r["Step"] == "20")
        assert base20["Val loss"] == "5.000" and base20["Tokenizer"] == "bpe", \
            "val loss and tokenizer come from the sidecar"


async def test_details_show_metadata_and_the_full_config(make_app, checkpoints: dict[str, Path]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 4)
        await wait_for(pilot, lambda: "[model]" in str(app.screen.query_one("#ckpt-config", Static).render()),
                       what="the config pane")
        config = str(app.screen.query_one("#ckpt-config", Static).render())
        assert "[train]" in config and "[optim]" in config, "the details show the whole config, not just the model"
        meta = str(app.screen.query_one("#ckpt-meta", Static).render())
        assert "Tokens seen" in meta and "Val bpb" in meta


async def test_delete_asks_first(make_app, checkpoints: dict[str, Path]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 4)
        first = highlighted(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("n")
        await pilot.pause()
        assert first.exists(), "declining must keep the checkpoint"
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: len(rows(app)) == 3, what="the row to go")
        assert not first.exists() and not first.with_suffix(".json").exists()


async def test_copy_path(make_app, checkpoints: dict[str, Path]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 4)
        await pilot.press("y")
        assert app.clipboard.endswith(".pt") and Path(app.clipboard).exists(), "y copies the checkpoint's path"


async def test_chat_and_evaluate_open_with_the_checkpoint(runs_root: Path, checkpoints: dict[str, Path]) -> None:
    engine = ScriptedEngine(runs_root, ScriptedGenerator(["Hi"]))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 4)
        chosen = highlighted(app)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and engine.loaded == [chosen],
                       what="chat loading the highlighted checkpoint")
        await pilot.press("escape", "2")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen), what="checkpoints again")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen), what="the evaluate screen")
        shown = str(app.screen.query_one("#eval-checkpoint", Static).render())
        assert display_path(chosen) in shown, f"evaluate opened another checkpoint: {shown!r}"


async def test_import_a_checkpoint_file(make_app, runs_root: Path, tmp_path: Path) -> None:
    outside = save_tiny_checkpoint(tmp_path / "elsewhere", "foreign", step=7)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 0)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, ImportFormScreen), what="the import form")
        app.screen.query_one("#import-path", Input).value = str(outside)
        app.screen.query_one("#import-name", Input).value = "imported-foreign"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen) and len(rows(app)) == 1,
                       timeout=30, what="the imported checkpoint")
        row = rows(app)[0]
        assert (row["Run"], row["Kind"], row["Step"]) == ("imported-foreign", "import", "7"), row


def test_import_path_checks(tmp_path: Path) -> None:
    assert "does not exist" in path_problem(str(tmp_path / "missing.pt"))
    assert "is a folder" in path_problem(str(tmp_path))
    (tmp_path / "notes.txt").write_text("x")
    assert "expected a PyTorch checkpoint" in path_problem(str(tmp_path / "notes.txt"))
    (tmp_path / "state_step000100.pt").write_bytes(b"x")
    assert path_problem(str(tmp_path / "state_step000100.pt")) == ""


def test_finetune_settings_are_checked() -> None:
    overrides, errors = parse_settings({"epochs": "2", "lr": "1e-4", "val_fraction": "0.2", "name": "ok-name"})
    assert errors == {} and "finetune.epochs=2" in overrides and "finetune.lr=0.0001" in overrides
    _, errors = parse_settings({"epochs": "0", "lr": "-1", "val_fraction": "1.5", "name": "bad name"})
    assert set(errors) == {"epochs", "lr", "val_fraction", "name"}
    _, errors = parse_settings({"epochs": "2", "lr": "nan", "val_fraction": "inf"})
    assert set(errors) == {"lr", "val_fraction"}, "the form takes the config's ranges (engine.limits)"


async def test_finetune_form_checks_data_and_launches(engine: FakeEngine, make_app, checkpoints: dict[str, Path],
                                                      tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(CONVERSATIONS))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"conversations": [{"messages": [{"role": "bot", "content": "hi"}]}]}))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 4)
        parent = app.screen.selected()
        assert parent is not None and parent.run == "base-sft", "the newest run comes first"
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneFormScreen), what="the fine-tune form")
        form = app.screen
        summary = form.query_one("#ft-data-summary", Static)
        form.query_one("#ft-data", Input).value = str(bad)
        await wait_for(pilot, lambda: "role" in str(summary.render()), what="the problems of the bad file")
        assert "expected one of system/user/assistant" in str(summary.render())
        assert form.query_one("#launch").disabled, "invalid data cannot be launched"
        form.query_one("#ft-data", Input).value = str(good)
        await wait_for(pilot, lambda: "6 valid" in str(summary.render()), what="the summary of the good file")
        await wait_for(pilot, lambda: not form.query_one("#ft-epochs", Input).disabled, what="the parent's settings")
        form.query_one("#ft-epochs", Input).value = "1"
        form.query_one("#ft-name", Input).value = "sft-test"
        await pilot.pause()
        assert not form.query_one("#launch").disabled
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=60, what="the new run's dashboard")
        assert engine.launched == [("sft-test", False)]
        run = json.loads((engine.root / "sft-test" / "run.json").read_text())
        assert run["kind"] == "finetune" and run["parent"] == str(parent.path), "the run records its parent"


def test_snapshot(snap_compare, make_app, checkpoints: dict[str, Path], utc: None, isolated_home: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(isolated_home)  # paths show relative to the working folder

    async def details_shown(pilot) -> None:
        await show_checkpoints(pilot, 4)
        await wait_for(pilot, lambda: "[model]" in str(pilot.app.screen.query_one("#ckpt-config", Static).render()),
                       what="the config pane")

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=details_shown)


async def test_keyboard_only_tour(runs_root: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                  isolated_home: Path) -> None:
    """The issue's "done when": pick, chat with the temperature moved, stop with Esc, save, compare two, no mouse."""
    gate = threading.Semaphore(0)
    engine = FixedEvalEngine(runs_root, ScriptedGenerator(["Good", " morrow", ",", " friend", "."], gate=gate))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 4)
        first = app.screen.selected()
        assert first is not None
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and chat_shows(app.screen, first.path),
                       what="the chat with the checkpoint")
        chat = app.screen
        await pilot.press(*"Hail!", "tab", "right", "right")
        assert chat.query_one("#temperature", Slider).value == 0.9, "Tab leads from the prompt to the temperature"
        await pilot.press("shift+tab")
        await pilot.press("enter")
        gate.release(2)
        await wait_for(pilot, lambda: engine.generator.calls and chat.generating, what="the reply to start")
        assert engine.generator.calls[-1][1].temperature == 0.9
        await pilot.press("escape")
        await wait_for(pilot, lambda: not chat.generating, what="Esc to stop the reply")
        await pilot.press("ctrl+s")
        saved = isolated_home / "data" / "conversations"
        await wait_for(pilot, lambda: saved.is_dir() and any(saved.iterdir()), what="the saved conversation")
        assert read_conversations(next(saved.iterdir())).ok
        await pilot.press("escape", "2")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen), what="back to the checkpoints")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen), what="the evaluate screen")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.screen.query_one("#eval-results", DataTable).row_count == 1, what="result 1")
        await pilot.press("2", "down", "e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen), what="the evaluate screen again")
        await pilot.press("ctrl+r")
        table = app.screen.query_one("#eval-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="result 2")
        labels = [row["Checkpoint"] for row in rows_by_header(table)]
        assert labels[0] == first.label and labels[1] != labels[0], labels


def test_a_running_run_keeps_its_checkpoints(engine: FakeEngine, checkpoints: dict[str, Path]) -> None:
    import os

    from engine.errors import CheckpointError
    from engine.runs import update_status
    from tests.tui.model_fixtures import entry_for

    update_status(checkpoints["base20"].parent.parent, state="running", pid=os.getpid())
    with pytest.raises(CheckpointError, match="is running"):
        engine.delete_checkpoint(entry_for(checkpoints["base20"]))
    assert checkpoints["base20"].exists()
    update_status(checkpoints["base20"].parent.parent, state="running", pid=dead_pid())
    engine.delete_checkpoint(entry_for(checkpoints["base20"]))
    assert not checkpoints["base20"].exists(), "a run whose process is gone does not protect its checkpoints"
