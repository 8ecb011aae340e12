"""The chat screen: a streaming conversation with one checkpoint, sampling sliders beside it, commands and keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Static
from textual.worker import Worker

from engine.errors import EngineError
from nanogpt_tui.messages import ModelLoaded, ReplyCompleted, ReplyStreamed, TurnsDropped
from nanogpt_tui.model_service import CheckpointEntry, LoadedModel, SamplingValues, sampling_params
from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.screens.chat_commands import HELP, ChatCommand, UnknownCommand, parse_chat_command
from nanogpt_tui.widgets.clipboard import copy_text
from nanogpt_tui.widgets.message import ChatMessage, ConversationView, PromptArea
from nanogpt_tui.widgets.nav import NavTabs
from nanogpt_tui.widgets.path_input import display_path
from nanogpt_tui.widgets.sampling import SamplingPanel

if TYPE_CHECKING:
    from engine.chat import ChatSession

PRESETS = Binding.Group("Presets", compact=True)
NO_MODEL = "No model loaded: press ctrl+o to choose a checkpoint (or pick one on the Checkpoints screen and press c)."


class ChatScreen(AppScreen[None]):
    """One conversation with one model; the reply streams in a worker and Esc stops it, keeping what was said."""

    HELP_TITLE = "Chat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop/leave prompt"),
        Binding("ctrl+o", "open", "Load checkpoint"),
        Binding("c", "copy_reply", "Copy reply"),
        Binding("ctrl+l", "clear", "Clear view"),
        Binding("ctrl+n", "new", "New chat"),
        Binding("ctrl+r", "system", "System msg"),
        Binding("ctrl+f", "switch_template", "Template"),
        Binding("ctrl+s", "save", "Save"),
        Binding("f5", "preset('precise')", "Precise", group=PRESETS),
        Binding("f6", "preset('balanced')", "Balanced", group=PRESETS),
        Binding("f7", "preset('creative')", "Creative", group=PRESETS),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._model: LoadedModel | None = None
        self._session: ChatSession | None = None
        self._pending: CheckpointEntry | None = None
        self._loading: str | None = None
        self._cancel: threading.Event | None = None
        self._reply: ChatMessage | None = None
        self._system = ""
        # every turn said, also those dropped from the model's context or cleared from view (/save keeps them)
        self._transcript: list[dict[str, str]] = []
        self._last_reply = ""
        self._status: dict[str, str] = {}
        self._after_reply: Callable[[], None] | None = None

    @property
    def generating(self) -> bool:
        return self._cancel is not None

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavTabs("chat")
        with Horizontal(id="chat-main"):
            with Vertical(id="chat-left"):
                yield ConversationView(id="conversation", can_focus=True)
                yield Static("", id="chat-status")
                yield PromptArea(id="prompt")
            with VerticalScroll(id="chat-side"):
                yield Static(NO_MODEL, id="chat-model")
                yield SamplingPanel(id="sampling")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sampling").border_title = "Sampling (next reply)"
        self.query_one("#prompt", PromptArea).focus()
        if self._pending is not None:
            self.open_checkpoint(self._pending)
        else:
            self._notice(NO_MODEL)

    # ------------------------------------------------------------------ the model
    def open_checkpoint(self, entry: CheckpointEntry) -> None:
        """Load `entry` in a worker; the current conversation stays until the new model is ready."""
        if not self.is_mounted:
            self._pending = entry
            return
        self._pending = None
        if self.generating:
            self.notify("A reply is still streaming: press Esc to stop it first.", severity="warning")
            return
        self._loading = entry.label
        self._notice(f"Loading {entry.label}…")
        self.query_one("#chat-model", Static).update(f"Loading [b]{entry.label}[/b]…")
        self._load(entry)

    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def _load(self, entry: CheckpointEntry) -> None:
        self.post_message(ModelLoaded(self.engine.load_model(entry)))

    @on(ModelLoaded)
    def _loaded(self, event: ModelLoaded) -> None:
        model = event.model
        template = "" if model.finetuned else "plain"
        try:
            session = self.engine.chat_session(model, template, self._system)
        except EngineError as err:
            self._loading = None
            self.nanogpt.show_error(err, title=f"Cannot chat with {model.label}")
            return
        self._model, self._session, self._loading = model, session, None
        self._transcript = []
        self._clear_view()
        self._notice(f"{model.label} loaded ({session.template} template, context {model.generator.max_context} tokens).")
        if not model.finetuned:
            self._notice(f"{model.label} is a base model: it continues text rather than answers "
                         "(plain Human:/Assistant: template).", warning=True)
        for note in model.notes:
            self._notice(note)
        self.query_one("#chat-model", Static).update(self._model_text(model))
        self._set_status(model=model.label, template=session.template)

    def worker_failed(self, worker: Worker[object], error: BaseException) -> None:
        if worker.group == "chat-load":
            self._loading = None
            self.query_one("#chat-model", Static).update(
                NO_MODEL if self._model is None else self._model_text(self._model))
            self.nanogpt.show_error(error, title="Could not load the checkpoint")
            return
        if worker.group == "chat-reply":
            self._finish_reply("failed")
        super().worker_failed(worker, error)

    @staticmethod
    def _model_text(model: LoadedModel) -> Text:
        return Text.assemble((model.label, "bold"), "\n", display_path(model.entry_path))

    def action_open(self) -> None:
        from nanogpt_tui.screens.checkpoint_picker import CheckpointPickerScreen

        def chosen(entry: CheckpointEntry | None) -> None:
            if entry is not None:
                self.open_checkpoint(entry)

        self.app.push_screen(CheckpointPickerScreen("chat with"), chosen)

    # ------------------------------------------------------------------ sending and streaming
    @on(PromptArea.Submitted)
    def _submitted(self, event: PromptArea.Submitted) -> None:
        text = event.text
        try:
            command = parse_chat_command(text)
        except UnknownCommand as err:
            self.notify(str(err), severity="warning")
            return
        if command is not None:
            event.prompt.remember(text)
            self.run_command(command)
            return
        if text.strip():
            self.send(text[1:] if text.startswith("//") else text)

    def send(self, text: str) -> None:
        """Show the message and stream the model's reply to it."""
        if self.generating:
            self.notify("The model is still replying: press Esc to stop it.", severity="warning")
            return
        if self._session is None:
            self.notify(f"{self._loading} is still loading…" if self._loading else NO_MODEL, severity="warning")
            return
        self.query_one("#prompt", PromptArea).remember(text)
        self._transcript.append({"role": "user", "content": text})
        self._mount_message(ChatMessage("user", text))
        self._reply = ChatMessage("assistant")
        self._reply.add_class("streaming")
        self._mount_message(self._reply)
        self._cancel = threading.Event()
        self._set_status(speed="…")
        self._stream_reply(self._session, text, self.query_one(SamplingPanel).values(), self._cancel)

    @work(thread=True, exclusive=True, group="chat-reply", exit_on_error=False)
    def _stream_reply(self, session: ChatSession, text: str, values: SamplingValues, cancel: threading.Event) -> None:
        from engine.chat import ContextTrimmed, ReplyFinished
        from engine.data.chat_template import render

        generator = session.generator
        reply, tokens, first_token_at = "", 0, 0.0
        for event in session.send(text, cancel, sampling_params(values)):
            if isinstance(event, ContextTrimmed):
                self.post_message(TurnsDropped(event.dropped_messages, event.total_dropped, event.fits))
            elif isinstance(event, ReplyFinished):
                elapsed = time.perf_counter() - first_token_at if first_token_at else 0.0
                # tokens after the first, over the time since the first: the decoding speed the user sees
                speed = (event.tokens - 1) / elapsed if event.tokens > 1 and elapsed > 0 else None
                context, _ = render(session.messages, session.template, generator.tokenizer)
                self.post_message(ReplyCompleted(event.text, event.finish_reason, event.tokens, speed, len(context),
                                                 generator.max_context, values.seed))
            else:
                reply += event.text
                if event.token_id is not None:
                    tokens += 1
                    first_token_at = first_token_at or time.perf_counter()
                self.post_message(ReplyStreamed(reply, tokens))

    @on(ReplyStreamed)
    def _streamed(self, event: ReplyStreamed) -> None:
        if self._reply is not None:
            self._reply.set_text(event.text)
            self._reply.set_footnote(f"{event.tokens} tokens…")

    @on(TurnsDropped)
    def _turns_dropped(self, event: TurnsDropped) -> None:
        note = f"{event.total_dropped} old message(s) dropped to fit the context"
        self._set_status(dropped=note)
        fit = "" if event.fits else "; even the newest message alone is too long, so only its end is read"
        self._notice(f"Dropped the {event.dropped} oldest message(s) so the conversation fits the model's context{fit}.",
                     warning=True)

    @on(ReplyCompleted)
    def _completed(self, event: ReplyCompleted) -> None:
        if self._reply is not None:
            self._reply.set_text(event.text)
        self._transcript.append({"role": "assistant", "content": event.text})
        self._last_reply = event.text
        speed = f"{event.tokens_per_s:.1f} tok/s" if event.tokens_per_s is not None else "—"
        self._set_status(speed=speed, context=f"context {event.context_tokens}/{event.context_window} tokens",
                         seed=f"seed {event.seed}")
        reason = {"cancelled": "stopped", "length": "max tokens reached"}.get(event.finish_reason, "")
        self._finish_reply(f"{event.tokens} tokens · {speed}" + (f" · {reason}" if reason else ""))

    def _finish_reply(self, footnote: str) -> None:
        if self._reply is not None:
            self._reply.remove_class("streaming")
            self._reply.set_footnote(footnote)
        self._reply = None
        self._cancel = None
        then, self._after_reply = self._after_reply, None
        if then is not None:
            then()

    def action_stop(self) -> None:
        """Stop the reply; with none running, move between the prompt and the conversation (where 1-4 and c work)."""
        prompt = self.query_one("#prompt", PromptArea)
        if self._cancel is not None:
            self._cancel.set()
            self._set_status(speed="stopping…")
        elif prompt.has_focus:
            self.query_one("#conversation").focus()
        else:
            prompt.focus()

    def on_unmount(self) -> None:
        # quitting (ctrl+q, /quit) must not leave a worker thread generating: the process would wait for it
        if self._cancel is not None:
            self._cancel.set()

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
        self._save_worker(system + self._transcript, path)

    @work(thread=True, exclusive=True, group="chat-save", exit_on_error=False)
    def _save_worker(self, messages: list[dict[str, str]], path: str | None) -> str:
        return str(self.engine.save_conversation(messages, path))

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

    # ------------------------------------------------------------------ view helpers
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
