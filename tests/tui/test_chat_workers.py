"""The chat screen's workers: it opens the newest checkpoint by itself (the CLI's rule), only the latest
load counts, a model switch waits for the streaming reply, and Chat and Evaluate share one loaded model."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.runs import Workspace
from engine.settings import Settings
from nanogpt_tui.app import LocalEngine, NanoGPTApp
from nanogpt_tui.cli import run_cli
from engine.runs.protocol import CheckpointEntry
from nanogpt_tui.model_service import LoadedModel
from nanogpt_tui.screens.chat import ChatScreen
from nanogpt_tui.widgets.message import ChatMessage, ChatNotice, PromptArea
from tests.tui.conftest import FIXED_NOW, wait_for
from tests.tui.model_fixtures import ScriptedEngine, ScriptedGenerator, entry_for, save_tiny_checkpoint
from tests.tui.model_fixtures import chat_model_text, chat_shows


class GatedLoads(ScriptedEngine):
    """load_model waits for the checkpoint's event when one is set (a slow disk, a big model)."""

    def __init__(self, root: Path, generator: ScriptedGenerator) -> None:
        super().__init__(root, generator)
        self.gates: dict[Path, threading.Event] = {}

    def load_model(self, entry: CheckpointEntry) -> LoadedModel:
        gate = self.gates.get(entry.path)
        if gate is not None:
            assert gate.wait(30), "the test never released this load"
        return super().load_model(entry)


async def test_chat_opens_the_newest_checkpoint_like_the_cli(runs_root: Path, capsys) -> None:
    save_tiny_checkpoint(runs_root, "older", created_at=FIXED_NOW - 9000)
    newest = save_tiny_checkpoint(runs_root, "newer", step=12, created_at=FIXED_NOW - 100)
    engine = ScriptedEngine(runs_root, ScriptedGenerator(["Hi"]))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(pilot, lambda: chat_shows(screen, newest), what="the newest checkpoint to load by itself")
        notices = "\n".join(str(n.render()) for n in screen.query(ChatNotice))
        assert "newer @ 12" in notices, "the chat must say which checkpoint it opened"
    assert engine.loaded == [newest]
    assert run_cli(["generate", "--max-tokens", "1", "--prompt", "Once"]) == 0
    assert f"({newest})" in capsys.readouterr().err, "the CLI resolved another checkpoint than the app"
    assert Workspace().resolve_checkpoint(None).path == newest


async def test_a_slow_earlier_load_does_not_win(runs_root: Path) -> None:
    first = save_tiny_checkpoint(runs_root, "first", created_at=FIXED_NOW - 9000)
    second = save_tiny_checkpoint(runs_root, "second", created_at=FIXED_NOW - 8000)
    engine = GatedLoads(runs_root, ScriptedGenerator(["Hi"]))
    engine.gates[first] = threading.Event()
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.open_checkpoint(entry_for(first))
        screen.open_checkpoint(entry_for(second))
        await wait_for(pilot, lambda: chat_shows(screen, second), what="the second checkpoint")
        engine.gates[first].set()
        await wait_for(pilot, lambda: engine.loaded.count(first) == 1, what="the slow load to end")
        await pilot.pause(0.2)
        assert chat_shows(screen, second) and not chat_shows(screen, first), \
            f"the earlier, slower load won: the chat shows {chat_model_text(screen)!r}"


async def test_switching_models_while_a_reply_streams(runs_root: Path) -> None:
    old = save_tiny_checkpoint(runs_root, "old", created_at=FIXED_NOW - 9000)
    new = save_tiny_checkpoint(runs_root, "new", created_at=FIXED_NOW - 8000)
    gate = threading.Semaphore(0)
    engine = GatedLoads(runs_root, ScriptedGenerator(["Good", " morrow"], gate=gate))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.open_checkpoint(entry_for(old))
        await wait_for(pilot, lambda: chat_shows(screen, old), what="the old model")
        engine.gates[new] = threading.Event()
        screen.open_checkpoint(entry_for(new))  # loads while the user goes on chatting
        prompt = screen.query_one(PromptArea)
        prompt.focus()
        prompt.text = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.generating, what="the old model's reply")
        gate.release()
        engine.gates[new].set()
        await wait_for(pilot, lambda: chat_shows(screen, new) and not screen.generating,
                       what="the switch once the old reply stopped")
        await pilot.pause(0.2)
        assert screen.transcript == [], "the old model's reply leaked into the new conversation"
        assert not [m for m in screen.query(ChatMessage) if m.role == "assistant"]


def test_chat_and_evaluate_share_one_loaded_model(runs_root: Path) -> None:
    path = save_tiny_checkpoint(runs_root, "shared")
    engine = LocalEngine(runs_root)
    entry = entry_for(path)
    models: list[LoadedModel] = []
    threads = [threading.Thread(target=lambda: models.append(engine.load_model(entry))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert models[0] is models[1], "two screens loaded two copies of one checkpoint"
    other = engine.load_model(entry_for(save_tiny_checkpoint(runs_root, "other")))
    assert other is not models[0] and engine.load_model(entry) is models[0]
