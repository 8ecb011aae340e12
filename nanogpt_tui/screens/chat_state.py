"""ChatBase: the chat screen's state, its view helpers and what each command (and its key) does to it.

ChatScreen (`chat.py`) adds the model and streaming; the commands are parsed in `chat_commands.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.widgets import Static
from textual.worker import Worker

from engine.errors import EngineError
from engine.text_input import text_problem
from nanogpt_tui.clipboard import copy_text
from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.screens.chat_commands import HELP, NO_MODEL, ChatCommand
from nanogpt_tui.widgets.message import ChatMessage, ConversationView
from nanogpt_tui.widgets.sampling import SamplingPanel

if TYPE_CHECKING:
    from textual.timer import Timer

    from engine.inference.chat import ChatSession
    from nanogpt_tui.messages.generation import ReplyStreamed
    from engine.runs.protocol import CheckpointEntry
    from nanogpt_tui.model_service import LoadedModel


class ChatBase(AppScreen[None]):
    """The chat screen's state, its view helpers and what the commands do; ChatScreen adds the model and streaming."""

    def __init__(self) -> None:
        super().__init__()
        self._model: LoadedModel | None = None
        self._session: ChatSession | None = None
        self._pending: CheckpointEntry | None = None
        self._loading: str | None = None
        self._load_ticket = 0  # counts load requests; only the latest one's model is used
        self._load_worker: Worker[None] | None = None
        self._cancel: threading.Event | None = None
        self._reply: ChatMessage | None = None  # the reply that is streaming
        self._streamed_so_far: ReplyStreamed | None = None  # its latest text, drawn at most once a frame
        self._redraw: Timer | None = None
        self._drawn_at = 0.0  # monotonic time of the last frame (0 = none yet in this reply)
        self._busy_at = 0.0  # the UI thread's CPU time then
        self._frame_s = 0.05  # the current interval between frames
        self._system = ""
        # every turn said, also those dropped from the model's context or cleared from view (/save keeps them)
        self._transcript: list[dict[str, str]] = []
        self._last_reply = ""
        self._status: dict[str, str] = {}
        self._after_reply: Callable[[], None] | None = None

    @property
    def generating(self) -> bool:
        return self._cancel is not None

    @property
    def transcript(self) -> list[dict[str, str]]:
        """A copy of every turn said, also those cleared from view or dropped from the context: what /save writes."""
        return [dict(turn) for turn in self._transcript]

    def _mount_message(self, widget: ChatMessage) -> None:
        self.query_one(ConversationView).add(widget)

    def _notice(self, text: str, *, warning: bool = False) -> None:
        self.query_one(ConversationView).notice(text, warning=warning)

    def _clear_view(self) -> None:
        self.query_one(ConversationView).clear(keep=self._reply)

    def _set_status(self, **parts: str) -> None:
        self._status.update(parts)
        order = ("model", "template", "speed", "context", "dropped", "seed")
        self.query_one("#chat-status", Static).update(" · ".join(self._status[k] for k in order if self._status.get(k)))

    # ------------------------------------------------------------------ commands
    def run_command(self, command: ChatCommand) -> None:
        handlers: dict[str, Any] = {
            "quit": self.action_quit_chat, "clear": self.action_clear, "new": self._new_conversation,
            "help": lambda: self._notice(HELP), "save": lambda: self._save(command.argument or None),
            "system": lambda: self._set_system(command.argument),
            "template": lambda: self._set_template(command.argument),
        }
        handlers[command.name]()

    def action_quit_chat(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        self.app.exit()

    def action_clear(self) -> None:
        self._clear_view()
        if self._transcript:
            self._notice("View cleared; the conversation goes on (ctrl+n starts a new one).")

    def action_new(self) -> None:
        if not self._transcript:
            self._new_conversation()
            return
        from nanogpt_tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._new_conversation()

        self.app.push_screen(ConfirmScreen("Start a new conversation? The current one is forgotten unless "
                                           "you saved it (ctrl+s).", "New"), answered)

    def _new_conversation(self) -> None:
        if self._cancel is not None:
            # the worker still writes the stopped reply into the session; start afresh once it has
            self._cancel.set()
            self._after_reply = self._new_conversation
            return
        if self._session is not None:
            self._session.new()
        self._transcript = []
        self._last_reply = ""
        self._clear_view()
        self._set_status(dropped="")
        self._notice("New conversation.")

    def action_system(self) -> None:
        from nanogpt_tui.screens.text_prompt import TextPromptScreen

        def answered(text: str | None) -> None:
            if text is not None:
                self._set_system(text)

        self.app.push_screen(TextPromptScreen("System message for this conversation (empty removes it):",
                                              self._system, "You are a helpful assistant."), answered)

    def _set_system(self, text: str) -> None:
        if self.generating:
            self.notify("Wait for the reply to end (or press Esc) first.", severity="warning")
            return
        problem = text_problem(text)
        if problem is not None:
            self.notify(f"System message not changed: it {problem}.", severity="warning")
            return
        self._system = text.strip()
        if self._session is not None:
            messages = self._session.messages
            if messages and messages[0]["role"] == "system":
                del messages[0]
            if self._system:
                messages.insert(0, {"role": "system", "content": self._system})
            self._session.system = self._system
        self._notice(f"System message: {self._system}" if self._system else "System message removed.")

    def action_switch_template(self) -> None:
        if self._session is not None:
            self._set_template("special" if self._session.template == "plain" else "plain")

    def _set_template(self, template: str) -> None:
        if self._session is None or self._model is None:
            self.notify(NO_MODEL, severity="warning")
            return
        if self.generating:
            self.notify("Wait for the reply to end (or press Esc) first.", severity="warning")
            return
        try:
            session = self.engine.chat_session(self._model, template.strip().lower(), self._system)
        except EngineError as err:
            self.nanogpt.show_error(err, title="Template not changed")
            return
        session.messages = self._session.messages
        self._session = session
        self._set_status(template=session.template)
        self._notice(f"Template: {session.template}.")

    def action_save(self) -> None:
        self._save(None)

    def _save(self, path: str | None) -> None:
        system = [{"role": "system", "content": self._system}] if self._system else []
        messages = system + self._transcript
        target = Path(path).expanduser() if path else None
        if target is None or not target.exists():
            self._save_worker(messages, path, overwrite=False)
            return
        if target.is_dir():
            self.notify(f"Not saved: {target} is a folder; give a file name (/save PATH.json).", severity="warning")
            return
        from nanogpt_tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._save_worker(messages, path, overwrite=True)
            else:
                self._notice(f"Not saved: {target} is kept as it was.")

        self.app.push_screen(ConfirmScreen(f"{target} already exists. Replace it with this conversation? "
                                           "What the file holds now is lost.", "Replace"), answered)

    @work(thread=True, exclusive=True, group="chat-save", exit_on_error=False)
    def _save_worker(self, messages: list[dict[str, str]], path: str | None, overwrite: bool) -> str:
        return str(self.engine.save_conversation(messages, path, overwrite))

    def worker_succeeded(self, worker: Worker[object]) -> None:
        if worker.group == "chat-save":
            self._notice(f"Saved the conversation (fine-tuning JSON) to {worker.result}.")
            self.notify(f"Saved to {worker.result}", timeout=4)

    def action_copy_reply(self) -> None:
        if not self._last_reply:
            self.notify("There is no reply to copy yet.", severity="warning")
            return
        copy_text(self, self._last_reply, "the last reply")

    def action_preset(self, name: str) -> None:
        self.query_one(SamplingPanel).apply_preset(name)

