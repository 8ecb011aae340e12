"""The chat screen: streaming, Esc keeps the partial reply, sliders reach the generator, commands, errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from textual.widgets import Static

from engine.data.conversations import read_conversations
from nanogpt_tui.app import NanoGPTApp
from nanogpt_tui.messages.generation import POST_EVERY_S
from nanogpt_tui.model_service import LoadedModel
from nanogpt_tui.screens.chat import ChatScreen
from nanogpt_tui.screens.chat_commands import NO_MODEL
from nanogpt_tui.screens.checkpoints import open_checkpoint_in
from engine.settings import Settings
from nanogpt_tui.widgets.message import ChatMessage, ChatNotice, PromptArea
from nanogpt_tui.widgets.slider import Slider
from tests.tui.conftest import FIXED_NOW, FakeEngine, record_notifications, wait_for
from tests.tui.model_fixtures import ScriptedEngine, ScriptedGenerator, entry_for, save_tiny_checkpoint
from tests.tui.model_fixtures import chat_model_text, chat_shows

if TYPE_CHECKING:
    from engine.inference.chat import ChatSession

SCRIPT = ["Good", " morrow", ",", " gentle", " friend", "."]


@pytest.fixture
def gate() -> threading.Semaphore:
    return threading.Semaphore(0)


@pytest.fixture
def scripted(runs_root: Path, gate: threading.Semaphore) -> tuple[ScriptedEngine, Path]:
    path = save_tiny_checkpoint(runs_root, "sft", kind="finetune")
    return ScriptedEngine(runs_root, ScriptedGenerator(SCRIPT, gate=gate)), path


async def open_chat(pilot, path: Path) -> ChatScreen:
    await open_checkpoint_in(pilot.app, "chat", entry_for(path))
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await wait_for(pilot, lambda: chat_shows(screen, path), what="the model to load")
    return screen


def status_parts(screen: ChatScreen) -> list[str]:
    """The chat's status line, part by part: model, template, speed, context, dropped turns, seed."""
    return str(screen.query_one("#chat-status", Static).render()).split(" · ")


def replies(screen: ChatScreen) -> list[str]:
    return [m.text for m in screen.query(ChatMessage) if m.role == "assistant"]


def notices(screen: ChatScreen) -> str:
    return "\n".join(str(n.render()) for n in screen.query(ChatNotice))


async def release(pilot, gate: threading.Semaphore, tokens: int) -> None:
    """Let the scripted model produce `tokens` tokens, slower than the app batches them for the screen."""
    for _ in range(tokens):
        gate.release()
        await pilot.pause(POST_EVERY_S * 2.5)


async def send(pilot, text: str) -> None:
    prompt = pilot.app.screen.query_one(PromptArea)
    prompt.focus()
    prompt.text = text
    await pilot.press("enter")


async def chat_with_one_reply(pilot, path: Path, gate: threading.Semaphore) -> ChatScreen:
    """The chat open on `path` with one full reply to "hello"."""
    screen = await open_chat(pilot, path)
    gate.release(len(SCRIPT))
    await send(pilot, "hello")
    await wait_for(pilot, lambda: not screen.generating and replies(screen), what="the reply")
    return screen


async def test_reply_streams_token_by_token(scripted, gate: threading.Semaphore) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        await send(pilot, "hello")
        await wait_for(pilot, lambda: replies(screen) == [""], what="an empty reply bubble")
        assert screen.query_one(PromptArea).text == "", "the prompt empties once sent"
        await release(pilot, gate, 2)
        await wait_for(pilot, lambda: replies(screen) == ["Good morrow"], what="the first two tokens")
        assert screen.generating, "the reply is still streaming"
        gate.release(len(SCRIPT))
        await wait_for(pilot, lambda: not screen.generating, what="the end of the reply")
        assert replies(screen) == ["Good morrow, gentle friend."]
        assert screen.transcript[-1] == {"role": "assistant", "content": "Good morrow, gentle friend."}
        status = str(screen.query_one("#chat-status", Static).render())
        assert "tok/s" in status and "context" in status, f"the status line shows speed and context: {status!r}"
        await pilot.press("up")
        assert screen.query_one(PromptArea).text == "hello", "Up recalls the last prompt"


async def test_escape_stops_and_keeps_the_partial_reply(scripted, gate: threading.Semaphore) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        await send(pilot, "hello")
        await release(pilot, gate, 3)
        await wait_for(pilot, lambda: replies(screen) == ["Good morrow,"], what="three tokens")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generating, what="the stop")
        assert engine.generator.cancel_seen is not None and engine.generator.cancel_seen.is_set()
        assert replies(screen) == ["Good morrow,"], "the partial reply stays on screen"
        assert "stopped" in str(screen.query(ChatMessage).last().border_subtitle)
        gate.release(len(SCRIPT))
        await send(pilot, "again")
        await wait_for(pilot, lambda: not screen.generating and len(replies(screen)) == 2, what="the next reply")
        prompt = engine.generator.prompt_text()
        assert "Good morrow," in prompt and "gentle" not in prompt, \
            f"the partial reply stays in the conversation the model sees next: {prompt!r}"


async def test_slider_values_reach_the_generator(scripted, gate: threading.Semaphore) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        screen.query_one("#temperature", Slider).focus()
        await pilot.press("shift+right", "right")  # 0.8 + 0.25 + 0.05
        screen.query_one("#top-k", Slider).focus()
        await pilot.press(*["shift+left"] * 30)  # clamps at 0 = off
        screen.query_one("#max-tokens", Slider).focus()
        await pilot.press("enter", "1", "0", "0", "enter")  # typed exactly
        screen.query_one("#seed").value = "42"
        gate.release(len(SCRIPT))
        await send(pilot, "hello")
        await wait_for(pilot, lambda: not screen.generating and replies(screen), what="the reply")
        _, params = engine.generator.calls[-1]
        assert (params.temperature, params.top_k, params.max_new_tokens) == (1.1, 0, 100), \
            f"the sliders must set the next reply's sampling, got {params}"
        assert params.seed >= 42 and params.top_p == 0.95 and params.repetition_penalty == 1.0


async def test_new_clear_save_and_system(scripted, gate: threading.Semaphore, tmp_path: Path) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        await send(pilot, "/system Speak as a sonneteer.")
        gate.release(len(SCRIPT))
        await send(pilot, "hello")
        await wait_for(pilot, lambda: not screen.generating and replies(screen), what="the reply")
        saved = tmp_path / "chat.json"
        await send(pilot, f"/save {saved}")
        await wait_for(pilot, saved.exists, what="the saved conversation")
        report = read_conversations(saved)
        assert report.ok, f"the fine-tune loader must accept /save's JSON: {report.problem_text()}"
        assert report.conversations[0].messages == [
            {"role": "system", "content": "Speak as a sonneteer."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "Good morrow, gentle friend."},
        ]
        await send(pilot, "/clear")
        await pilot.pause()
        assert not list(screen.query(ChatMessage)), "/clear empties the view"
        assert len(screen.transcript) == 2, "/clear keeps the conversation"
        await send(pilot, "/new")
        await pilot.pause()
        assert not list(screen.query(ChatMessage)) and screen.transcript == []
        assert "New conversation." in notices(screen)
        gate.release(len(SCRIPT))
        await send(pilot, "again")
        await wait_for(pilot, lambda: not screen.generating and replies(screen), what="the first reply after /new")
        prompt = engine.generator.prompt_text()
        assert "Speak as a sonneteer." in prompt and "hello" not in prompt and "Good morrow" not in prompt, \
            f"/new forgets the turns, keeps the system message: the model read {prompt!r}"


async def test_new_key_asks_first_and_copy_takes_the_last_reply(scripted, gate: threading.Semaphore) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await chat_with_one_reply(pilot, path, gate)
        await pilot.press("escape", "c")
        assert app.clipboard == "Good morrow, gentle friend.", "c copies the last reply"
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        assert screen.transcript, "declining the confirmation keeps the conversation"
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert screen.transcript == [] and not list(screen.query(ChatMessage))


async def test_unknown_command_and_template_errors_keep_the_screen(scripted, gate: threading.Semaphore) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        shown = record_notifications(app)
        screen = await open_chat(pilot, path)
        await send(pilot, "/frobnicate")
        await send(pilot, "/template nonsense")
        await pilot.pause()
        assert any("unknown command /frobnicate" in m for m, _ in shown)
        assert any("unknown chat template" in m and s == "error" for m, s in shown)
        assert "special" in status_parts(screen), "a failed /template keeps the template"
        await send(pilot, "/template plain")
        await pilot.pause()
        assert "plain" in status_parts(screen) and "Template: plain." in notices(screen)
        gate.release(len(SCRIPT))
        await send(pilot, "hello")
        await wait_for(pilot, lambda: not screen.generating and replies(screen), what="the reply")
        prompt = engine.generator.prompt_text()
        assert "Human: hello" in prompt and "<|user_start|>" not in prompt, \
            f"the model reads the conversation in the plain template: {prompt!r}"


async def test_quitting_stops_a_running_reply(scripted) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot, path)
        await send(pilot, "hello")
        await wait_for(pilot, lambda: engine.generator.cancel_seen is not None, what="generation to start")
        cancel = engine.generator.cancel_seen
        assert cancel is not None and not cancel.is_set()
        await send(pilot, "/quit")
        await pilot.pause()
    assert cancel.is_set(), "/quit must stop the generation thread, or the process waits for it"


async def test_ctrl_q_stops_a_running_reply(scripted) -> None:
    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot, path)
        await send(pilot, "hello")
        await wait_for(pilot, lambda: engine.generator.cancel_seen is not None, what="generation to start")
        await pilot.press("ctrl+q")
    cancel = engine.generator.cancel_seen
    assert cancel is not None and cancel.is_set(), "quitting the app must stop the generation"


async def test_bad_checkpoint_shows_an_error_and_the_app_keeps_running(runs_root: Path) -> None:
    good = save_tiny_checkpoint(runs_root, "broken")
    good.write_bytes(b"this is not a checkpoint")
    app = NanoGPTApp(FakeEngine(runs_root), Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        shown = record_notifications(app)
        await open_checkpoint_in(app, "chat", entry_for(good))
        await wait_for(pilot, lambda: any(s == "error" for _, s in shown), what="the error notification")
        message = next(m for m, s in shown if s == "error")
        assert "not a readable checkpoint" in message, message
        screen = app.screen
        assert isinstance(screen, ChatScreen) and chat_model_text(screen) == NO_MODEL, \
            "after a failed load the chat has no model and is loading none"
        await send(pilot, "hello")
        await pilot.pause()
        assert any("No model loaded" in m for m, _ in shown), "sending without a model explains what to do"
        await pilot.press("escape", "1")
        await pilot.pause()
        assert app.current_mode == "runs", "the app keeps running and switching screens"


class SessionsKept(FakeEngine):
    """The local engine, keeping every chat session it hands out (the conversation the model reads)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.sessions: list[ChatSession] = []

    def chat_session(self, model: LoadedModel, template: str, system: str) -> ChatSession:
        session = super().chat_session(model, template, system)
        self.sessions.append(session)
        return session


async def test_real_tiny_base_model_streams_with_the_plain_template(runs_root: Path) -> None:
    path = save_tiny_checkpoint(runs_root, "base", kind="pretrain")
    engine = SessionsKept(runs_root)
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        assert "plain" in status_parts(screen) and engine.sessions[-1].template == "plain", \
            "a base model gets the plain template"
        assert "base model: it continues text rather than answers" in notices(screen)
        screen.query_one("#max-tokens", Slider).value = 16
        await send(pilot, "ROMEO:")
        await wait_for(pilot, lambda: not screen.generating and screen.transcript[-1]["role"] == "assistant",
                       timeout=60, what="the tiny model's reply")
        assert engine.sessions[-1].messages[-1]["role"] == "assistant", "the reply is in the conversation the model reads"
        assert "tok/s" in str(screen.query_one("#chat-status", Static).render())
        saved = json.loads(json.dumps(screen.transcript))
        assert saved[0] == {"role": "user", "content": "ROMEO:"}


def test_snapshot(snap_compare, runs_root: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(isolated_home)
    path = save_tiny_checkpoint(runs_root, "sft", kind="finetune", corpus="shakespeare")
    # one chunk: a reply of one token has no tokens/s, so the status line does not depend on timing
    engine = ScriptedEngine(runs_root, ScriptedGenerator(["Good morrow, gentle friend. What news?"]))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)

    async def chatted(pilot) -> None:
        screen = await open_chat(pilot, path)
        screen.query_one("#temperature", Slider).value = 0.55
        await send(pilot, "Good morrow! How fares the day?")
        await wait_for(pilot, lambda: not screen.generating and replies(screen), what="the reply")
        screen.query_one("#temperature", Slider).focus()

    assert snap_compare(app, terminal_size=(120, 40), run_before=chatted)


def test_save_conversation_needs_a_reply_and_leaves_out_empty_turns(engine: FakeEngine) -> None:
    from engine.errors import DataError

    with pytest.raises(DataError, match="no reply yet"):
        engine.save_conversation([{"role": "user", "content": "hello"}], None)
    path = engine.save_conversation([
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": ""},
        {"role": "user", "content": "again?"}, {"role": "assistant", "content": "Aye."},
    ], None)
    assert path.parent == engine.root.parent / "conversations", "saved beside the runs, in the data folder"
    report = read_conversations(path)
    assert report.ok and [m["content"] for m in report.conversations[0].messages] == ["hello", "again?", "Aye."]


async def test_old_turns_dropped_to_fit_are_announced(runs_root: Path) -> None:
    path = save_tiny_checkpoint(runs_root, "sft", kind="finetune")
    engine = ScriptedEngine(runs_root, ScriptedGenerator(SCRIPT, max_context=48))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        for turn in range(3):
            await send(pilot, f"Tell me the news from Verona, turn {turn}.")
            await wait_for(pilot, lambda n=turn + 1: not screen.generating and len(replies(screen)) == n,
                           what="a reply")
        status = str(screen.query_one("#chat-status", Static).render())
        assert "dropped to fit the context" in status, status
        assert "Dropped the 2 oldest message(s)" in notices(screen)
        assert len(screen.transcript) == 6, "the transcript (and /save) keeps the dropped turns"


async def test_typing_after_a_confirmation_goes_to_the_prompt(scripted, gate: threading.Semaphore) -> None:
    from nanogpt_tui.screens.help import HelpScreen

    engine, path = scripted
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await chat_with_one_reply(pilot, path, gate)
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("tab", "enter")  # the dialog: to "New", then press it
        await wait_for(pilot, lambda: app.screen is screen, what="the dialog to close")
        await pilot.press("w", "h", "y", "?")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen), "a typed ? opened the help instead of reaching the prompt"
        assert screen.query_one(PromptArea).text == "why?" and screen.query_one(PromptArea).has_focus
        screen.query_one(Slider).focus()
        await pilot.press("o", "k")
        assert screen.query_one(PromptArea).text == "why?ok", "printable keys go to the prompt whatever had focus"
        screen.set_focus(None)  # what a closed dialog left behind
        await pilot.press("?")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen) and screen.query_one(PromptArea).text == "why?ok?"
