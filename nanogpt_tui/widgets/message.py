"""The chat's pieces: one message of the conversation, a one-line notice, the conversation view and the prompt box."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static, TextArea

ROLE_TITLES = {"user": "You", "assistant": "Model", "system": "System"}


class ChatMessage(Static):
    """A message as plain text (model output is never read as markup); the reply grows while it streams.

    While it streams, the message keeps RESERVED_LINES blank lines below its text: laying out the
    screen is the costly part of a redraw, and this way it happens every few lines, not every line.
    """

    RESERVED_LINES = 4

    def __init__(self, role: str, text: str = "") -> None:
        super().__init__(classes=f"message {role}")
        self.role = role
        self.text = text
        self.border_title = ROLE_TITLES.get(role, role)
        self._reserved = 0  # content lines the message's height holds while it streams

    def on_mount(self) -> None:
        self.update(Text(self.text))

    def set_text(self, text: str, *, streaming: bool = False) -> None:
        """Show `text`; while `streaming`, the screen is laid out only when the reserved lines run out."""
        if text == self.text and streaming == bool(self._reserved):
            return
        self.text = text
        content = Text(text)
        width = self.content_region.width
        if not streaming or width <= 0:
            self._reserved = 0
            self.styles.min_height = None
            self.update(content)
            return
        lines = len(content.wrap(self.app.console, width))
        if lines <= self._reserved:
            self.update(content, layout=False)
            return
        self._reserved = lines + self.RESERVED_LINES
        frame = self.styles.gutter.height  # border and padding above and below the text
        self.styles.min_height = self._reserved + frame
        self.update(content)

    def set_footnote(self, note: str) -> None:
        """A short line under the message's border (e.g. "stopped", "42 tokens · 31.0 tok/s")."""
        self.border_subtitle = note


class ChatNotice(Static):
    """One line in the conversation that is not a message (model loaded, turns dropped, saved)."""

    def __init__(self, text: str, *, warning: bool = False) -> None:
        super().__init__(Text(text), classes="notice warning" if warning else "notice")


class PromptArea(TextArea):
    """Enter sends, Shift+Enter or Ctrl+J start a new line, Up on the first line recalls earlier prompts."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Send"),
        Binding("ctrl+j", "newline", "Newline", key_display="shift+enter/ctrl+j"),
    ]

    @dataclass
    class Submitted(Message):
        """Enter was pressed on the prompt."""

        prompt: PromptArea
        text: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, compact=True, tab_behavior="focus",
                         placeholder="Message the model — Enter sends, Shift+Enter or Ctrl+J for a new line, "
                                     "/help lists commands")
        self.sent_prompts: list[str] = []
        self._recalled = 0  # how many prompts back Up went; 0 = the user's own text

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()  # the binding sends; TextArea must not insert a newline
        elif event.key == "shift+enter":
            event.prevent_default()
            event.stop()
            self.action_newline()
        elif event.key == "up" and self.cursor_location[0] == 0 and self.sent_prompts:
            event.prevent_default()
            event.stop()
            self._recall(+1)
        elif event.key == "down" and self._recalled and self.cursor_location[0] == self.document.line_count - 1:
            event.prevent_default()
            event.stop()
            self._recall(-1)

    def _recall(self, direction: int) -> None:
        self._recalled = min(len(self.sent_prompts), max(0, self._recalled + direction))
        self.text = self.sent_prompts[-self._recalled] if self._recalled else ""
        self.move_cursor(self.document.end)

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    def remember(self, text: str) -> None:
        """Keep a sent prompt for Up, and empty the box."""
        if text.strip() and (not self.sent_prompts or self.sent_prompts[-1] != text):
            self.sent_prompts.append(text)
        self._recalled = 0
        self.text = ""


class ConversationView(VerticalScroll):
    """The conversation, anchored to the bottom while a reply streams unless the user scrolls up."""

    def on_mount(self) -> None:
        self.anchor()

    def add(self, widget: ChatMessage | ChatNotice) -> None:
        self.mount(widget)

    def notice(self, text: str, *, warning: bool = False) -> None:
        self.mount(ChatNotice(text, warning=warning))

    def clear(self, keep: Widget | None = None) -> None:
        """Remove everything but `keep` (a reply that is still streaming)."""
        for child in list(self.children):
            if child is not keep:
                child.remove()
