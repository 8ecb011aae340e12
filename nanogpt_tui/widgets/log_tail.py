"""Following a growing text file: a Textual-free incremental reader and the Log widget that shows it."""

from __future__ import annotations

import os
from pathlib import Path

from textual import on, work
from textual.widgets import Log

from nanogpt_tui.messages.dashboard import LogLinesRead
from nanogpt_tui.polling import keep_polling

# a long log is not read from the start: the last this many bytes give the visible tail
INITIAL_TAIL_BYTES = 64 * 1024
FOLLOW_INTERVAL_S = 0.5


class TextFollower:
    """Returns the complete lines appended since the last call; a torn last line waits."""

    def __init__(self, path: Path, initial_tail_bytes: int = INITIAL_TAIL_BYTES) -> None:
        self.path = path
        self._offset: int | None = None
        self._initial_tail_bytes = initial_tail_bytes
        self._pending = b""

    def read_new(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                if self._offset is None:
                    size = handle.seek(0, os.SEEK_END)
                    self._offset = max(0, size - self._initial_tail_bytes)
                    skip_partial = self._offset > 0
                else:
                    skip_partial = False
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        if skip_partial and lines:
            lines = lines[1:]  # the tail started in the middle of a line
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]


class LogTail(Log):
    """Shows the end of a text file and keeps following it; `auto_scroll` is the follow mode."""

    def __init__(self, *, id: str | None = None, max_lines: int = 2000) -> None:
        super().__init__(id=id, max_lines=max_lines, highlight=False)

    def toggle_follow(self) -> bool:
        """Stop or start scrolling to new lines; True when following."""
        self.auto_scroll = not self.auto_scroll
        if self.auto_scroll:
            self.scroll_end(animate=False)
        return self.auto_scroll

    def follow(self, path: Path) -> None:
        self.clear()
        self._follow(path)

    @work(thread=True, exclusive=True, group="log-tail", exit_on_error=False)
    def _follow(self, path: Path) -> None:
        follower = TextFollower(path)
        while True:
            lines = follower.read_new()
            if lines:
                self.post_message(LogLinesRead(lines))
            if not keep_polling(FOLLOW_INTERVAL_S):
                return

    @on(LogLinesRead)
    def _append(self, event: LogLinesRead) -> None:
        event.stop()
        self.write_lines(event.lines)
