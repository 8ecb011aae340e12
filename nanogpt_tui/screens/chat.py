"""The chat screen: a streaming conversation with one checkpoint, sampling sliders beside it, commands and keys."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Header, Input, Static, TextArea
from textual.worker import Worker

from engine.errors import EngineError
from engine.sampling_params import SamplingParams
from engine.text_input import text_problem
from nanogpt_tui.messages.generation import POST_EVERY_S, ModelLoaded, NewestCheckpointFound, ReplyCompleted, ReplyStreamed, TurnsDropped
from engine.runs.protocol import CheckpointEntry
from nanogpt_tui.model_service import LoadedModel, sampling_params
from nanogpt_tui.screens.chat_commands import NO_MODEL, UnknownCommand, parse_chat_command
from nanogpt_tui.screens.chat_state import ChatBase
from nanogpt_tui.widgets.message import ChatMessage, ConversationView, PromptArea
from nanogpt_tui.widgets.nav import NavTabs
from nanogpt_tui.widgets.path_input import display_path
from nanogpt_tui.widgets.sampling import SamplingPanel
from nanogpt_tui.widgets.footer import KeyBar

if TYPE_CHECKING:
    from engine.inference.chat import ChatSession

PRESETS = Binding.Group("Presets", compact=True)
STREAM_FRAME_S = 1 / 15  # a streaming reply is redrawn at most this often
UI_SHARE = 0.1  # ... and less often when drawing it would keep the UI thread busier than this


class ChatScreen(ChatBase):
    """One conversation with one model; the reply streams in a worker and Esc stops it, keeping what was said."""
    CSS_PATH = "css/chat.tcss"  # loaded when the screen is first shown, not for the first frame

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

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavTabs("chat")
        with Horizontal(id="chat-main"):
            with Vertical(id="chat-left"):
                yield ConversationView(id="conversation", can_focus=True)
                yield Static("", id="chat-status")
                yield PromptArea(id="prompt")
            with VerticalScroll(id="chat-side", can_focus=False):
                yield Static(NO_MODEL, id="chat-model")
                yield SamplingPanel(id="sampling")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#sampling").border_title = "Sampling (next reply)"
        self.query_one("#prompt", PromptArea).focus()
        if self._pending is not None:
            self.open_checkpoint(self._pending)
        else:
            # after the first refresh: a caller that opens a checkpoint right after switching here wins
            self.call_after_refresh(self._open_newest)

    def _open_newest(self) -> None:
        if self._model is None and self._loading is None:
            self._notice("Looking for the newest checkpoint…")
            self._find_newest()

    @work(thread=True, exclusive=True, group="chat-newest", exit_on_error=False)
    def _find_newest(self) -> None:
        self.post_message(NewestCheckpointFound(self.engine.newest_checkpoint()))

    @on(NewestCheckpointFound)
    def _newest_found(self, event: NewestCheckpointFound) -> None:
        if self._model is not None or self._loading is not None:
            return  # the user chose one meanwhile
        if event.entry is None:
            self._notice(NO_MODEL)
            return
        self._notice(f"Opening the newest checkpoint, {event.entry.label} (as `nanogpt-tui chat` does); "
                     "ctrl+o chooses another.")
        self.open_checkpoint(event.entry)

    def on_screen_resume(self) -> None:
        # back from a dialog (ctrl+n, ctrl+r, ctrl+o): the prompt, not whatever the dialog left focused
        if not isinstance(self.focused, (PromptArea, Input)) and self.focused is not self.query_one(ConversationView):
            self.query_one("#prompt", PromptArea).focus()

    def on_key(self, event: events.Key) -> None:
        """A printable key typed anywhere on the chat goes to the prompt, not to a key binding.

        Text fields (the prompt, the seed) take their own keys before this; the conversation keeps
        its keys (1-4, c) because the user moved there on purpose with Esc.
        """
        if not event.is_printable or event.character is None:
            return
        if isinstance(self.focused, (TextArea, Input, ConversationView)):
            return
        event.stop()
        event.prevent_default()
        prompt = self.query_one("#prompt", PromptArea)
        prompt.focus()
        prompt.insert(event.character)

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
        self._load_ticket += 1
        self._notice(f"Loading {entry.label}…")
        self.query_one("#chat-model", Static).update(f"Loading [b]{entry.label}[/b]…")
        self._load_worker = self._load(entry, self._load_ticket)

    # not exclusive: a thread cannot be interrupted, so every load ends and only the latest one counts
    @work(thread=True, group="chat-load", exit_on_error=False)
    def _load(self, entry: CheckpointEntry, ticket: int) -> None:
        self.post_message(ModelLoaded(self.engine.load_model(entry), ticket))

    @on(ModelLoaded)
    def _loaded(self, event: ModelLoaded) -> None:
        if event.ticket != self._load_ticket:
            return  # an earlier, slower load: a later choice replaced it
        if self.generating:
            # the old model is still replying: stop it, let its reply land in the old conversation, then switch
            assert self._cancel is not None
            self._cancel.set()
            self._after_reply = lambda: self._loaded(event)
            return
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
        self._notice(f"{model.label} loaded ({session.template} template, context {model.generator.max_context} tokens; "
                     f"the model reads the last {model.generator.attention_span} of them).")
        if not model.finetuned:
            self._notice(f"{model.label} is a base model: it continues text rather than answers "
                         "(plain Human:/Assistant: template).", warning=True)
        for note in model.notes:
            self._notice(note)
        self.query_one("#chat-model", Static).update(self._model_text(model))
        self._set_status(model=model.label, template=session.template)

    def worker_failed(self, worker: Worker[object], error: BaseException) -> None:
        if worker.group == "chat-load":
            if worker is not self._load_worker:
                return  # a load that a later choice replaced
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
        problem = text_problem(text)
        if problem is not None:
            self.notify(f"Not sent: the message {problem}.", severity="warning")
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
    def _stream_reply(self, session: ChatSession, text: str, values: SamplingParams, cancel: threading.Event) -> None:
        from engine.inference.chat import ContextTrimmed, ReplyFinished
        from engine.data.chat_template import render

        generator = session.generator
        reply, tokens, first_token_at, posted_at = "", 0, 0.0, 0.0
        for event in session.send(text, cancel, sampling_params(values)):
            if isinstance(event, ContextTrimmed):
                self.post_message(TurnsDropped(event.dropped_messages, event.total_dropped, event.fits))
            elif isinstance(event, ReplyFinished):
                elapsed = time.perf_counter() - first_token_at if first_token_at else 0.0
                # tokens after the first, over the time since the first: the decoding speed the user sees
                speed = (event.tokens - 1) / elapsed if event.tokens > 1 and elapsed > 0 else None
                context, _ = render(session.messages, session.template, generator.tokenizer)
                self.post_message(ReplyCompleted(event.text, event.finish_reason, event.tokens, speed, len(context),
                                                 generator.max_context, values.seed, generator.attention_span))
            else:
                reply += event.text
                if event.token_id is not None:
                    tokens += 1
                    first_token_at = first_token_at or time.perf_counter()
                # every message wakes the UI thread, which then holds the interpreter lock the generation needs:
                # tokens that come faster than POST_EVERY_S ride along with the next one (the reply's end is
                # always posted, by ReplyCompleted)
                now = time.perf_counter()
                if now - posted_at >= POST_EVERY_S:
                    posted_at = now
                    self.post_message(ReplyStreamed(reply, tokens))

    @on(ReplyStreamed)
    def _streamed(self, event: ReplyStreamed) -> None:
        """Draw the reply so far: the first token at once, then at most one frame per `_frame_s`.

        Drawing holds the interpreter lock, which the generation thread needs between its torch
        calls: the frame interval grows so the UI thread stays below UI_SHARE of the time.
        """
        self._streamed_so_far = event
        if self._redraw is None:
            wait = self._drawn_at + self._frame_s - time.monotonic()
            self._redraw = self.set_timer(wait, self._draw_stream) if wait > 0 else None
            if wait <= 0:
                self._draw_stream()

    def _draw_stream(self) -> None:
        now, busy = time.monotonic(), time.thread_time()
        if self._drawn_at:
            self._frame_s = max(STREAM_FRAME_S, (busy - self._busy_at) / UI_SHARE)
        self._redraw, self._drawn_at, self._busy_at = None, now, busy
        if self._reply is not None and self._streamed_so_far is not None:
            self._reply.set_text(self._streamed_so_far.text, streaming=True)
            self._reply.set_footnote(f"{self._streamed_so_far.tokens} tokens…")

    @on(TurnsDropped)
    def _turns_dropped(self, event: TurnsDropped) -> None:
        note = f"{event.total_dropped} old message(s) dropped to fit the context"
        self._set_status(dropped=note)
        fit = "" if event.fits else "; even the newest message alone is too long, so only its end is read"
        self._notice(f"Dropped the {event.dropped} oldest message(s) so the conversation fits the model's context{fit}.",
                     warning=True)

    @on(ReplyCompleted)
    def _completed(self, event: ReplyCompleted) -> None:
        from engine.inference.chat import context_statement  # a model is loaded, so torch already is

        if self._reply is not None:
            self._reply.set_text(event.text)
        self._transcript.append({"role": "assistant", "content": event.text})
        self._last_reply = event.text
        speed = f"{event.tokens_per_s:.1f} tok/s" if event.tokens_per_s is not None else "—"
        self._set_status(speed=speed, context=context_statement(event.context_tokens, event.context_window, event.reads_last),
                         seed=f"seed {event.seed}")
        reason = {"cancelled": "stopped", "length": "max tokens reached"}.get(event.finish_reason, "")
        self._finish_reply(f"{event.tokens} tokens · {speed}" + (f" · {reason}" if reason else ""))

    def _finish_reply(self, footnote: str) -> None:
        if self._redraw is not None:
            self._redraw.stop()
        self._redraw, self._streamed_so_far, self._drawn_at, self._frame_s = None, None, 0.0, STREAM_FRAME_S
        if self._reply is not None:
            self._reply.set_text(self._reply.text)  # gives back the lines reserved while streaming
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
