"""A newcomer's walk through the app, keyboard only, with real processes: pretrain the default preset
(its budget shrunk through the form's own fields so it takes seconds) -> dashboard -> Checkpoints ->
fine-tune with the form's defaults on the bundled conversations -> Chat with the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Static

from engine.runs import Workspace
from nanogpt_tui.app import NanoGPTApp
from nanogpt_tui.messages.generation import ReplyCompleted
from nanogpt_tui.screens.chat import ChatScreen
from nanogpt_tui.screens.checkpoints import CheckpointsScreen
from nanogpt_tui.screens.dashboard import DashboardScreen
from nanogpt_tui.screens.finetune_form import FinetuneFormScreen
from nanogpt_tui.screens.new_run import NewRunScreen, input_id
from nanogpt_tui.widgets.message import ChatNotice, PromptArea
from nanogpt_tui.widgets.path_input import display_path
from tests.tui.conftest import form_errors, wait_for
from tests.tui.model_fixtures import chat_model_text

# the default preset's model with a budget of seconds: 30 steps (or 20 s) of 16 rows, one validation at the end
TINY = {"name": "first", "train.num_iterations": "30", "train.time_budget_s": "20", "train.batch_size": "16",
        "train.micro_batch_size": "16", "run.val_every": "0", "run.checkpoint_every": "0", "run.sample_every": "0"}


async def type_into(pilot, widget: Input, text: str) -> None:
    """Replace the field's text the way a user does: go to it, clear it, type."""
    widget.focus()
    await pilot.press("home", "ctrl+k", *text)


async def until_finished(pilot, timeout: float) -> None:
    title = lambda: str(pilot.app.screen.query_one("#run-title", Static).render())  # noqa: E731
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen) and "finished" in title(),
                   timeout=timeout, what="the run to finish")


def val_losses(run_dir: Path) -> list[float]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [e["val_loss"] for e in events if e.get("kind") == "val"]


@pytest.mark.slow
async def test_pretrain_finetune_chat_by_keyboard() -> None:
    replies: list[ReplyCompleted] = []

    def hook(message: Message) -> None:
        if isinstance(message, ReplyCompleted):
            replies.append(message)

    app = NanoGPTApp()
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await pilot.press("n")
        assert isinstance(app.screen, NewRunScreen)
        await wait_for(pilot, lambda: "parameters" in str(app.screen.query_one("#summary", Static).render()),
                       what="the new-run form")
        for key, value in TINY.items():
            await type_into(pilot, app.screen.query_one("#" + input_id(key), Input), value)
        await pilot.pause()
        assert form_errors(app.screen) == {} and not app.screen.query_one("#launch", Button).disabled, \
            form_errors(app.screen)
        await pilot.press("ctrl+s")
        await until_finished(pilot, timeout=240)

        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen)
                       and app.screen.query_one("#checkpoints", DataTable).row_count == 1, what="the checkpoint")
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneFormScreen), what="the fine-tune form")
        form = app.screen
        await wait_for(pilot, lambda: not form.query_one("#ft-lr", Input).disabled, what="the parent's settings")
        await pilot.press("ctrl+g")  # the bundled conversations, everything else as the form proposes
        await wait_for(pilot, lambda: not form.query_one("#launch").disabled, timeout=30, what="the data checked")
        await pilot.press("ctrl+s")
        await until_finished(pilot, timeout=240)
        finetuned = Workspace().runs.list_runs()[0]
        assert finetuned.kind == "finetune"

        await pilot.press("4")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        try:
            # the model panel names the checkpoint's file once its conversation is ready
            await wait_for(pilot, lambda: chat_model_text(chat).endswith(".pt"), timeout=60,
                           what="the newest checkpoint in the chat")
        except AssertionError as err:
            notices = [str(n.render()) for n in chat.query(ChatNotice)]
            raise AssertionError(f"{err}; the chat says {notices}") from err
        assert display_path(finetuned.path / "checkpoints") in chat_model_text(chat), \
            f"the chat opened another checkpoint: {chat_model_text(chat)!r}"
        assert chat.query_one(PromptArea).has_focus
        await pilot.press("f5")  # the "precise" sampling preset
        await pilot.press(*"Good morrow!", "enter")
        await wait_for(pilot, lambda: bool(replies), timeout=60, what="the reply")

    losses = val_losses(finetuned.path)
    assert len(losses) >= 2 and losses[-1] <= losses[0] / 2, f"assistant-token val loss went {losses}"
    reply = replies[0]
    assert reply.finish_reason == "stop_token" and reply.tokens >= 1, f"the reply did not end on its own: {reply}"
