"""One sample's token ids as text chunks: decoded incrementally from UTF-8 bytes, holding back possible stop strings."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any


class TextStream:
    """Turns one sample's token ids into text chunks: UTF-8 safe, holding back possible stop strings."""

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = tuple(stop_strings)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.emitted = 0  # characters of self.text already handed out

    def push(self, token_id: int) -> tuple[str, bool]:
        """(text that is now safe to show, whether a stop string was completed); after a stop, text ends before it."""
        self.text += self.decoder.decode(self.tokenizer.decode_bytes([token_id]))
        # a stop string cannot start before `emitted`: a text that might begin one is never emitted
        hits = [index for stop in self.stop_strings if (index := self.text.find(stop, self.emitted)) >= 0]
        if hits:
            self.text = self.text[:min(hits)]
            return self._take(len(self.text)), True
        return self._take(len(self.text) - self._held_back()), False

    def flush(self) -> str:
        """Everything not yet shown; an incomplete character at the end (a sample cut short) is left out."""
        self.decoder.reset()
        return self._take(len(self.text))

    def _held_back(self) -> int:
        """Length of the longest unshown suffix of the text that begins some stop string."""
        tail = self.text[self.emitted:]
        for length in range(min(len(tail), max((len(s) for s in self.stop_strings), default=0)), 0, -1):
            if any(stop.startswith(tail[-length:]) for stop in self.stop_strings):
                return length
        return 0

    def _take(self, end: int) -> str:
        piece = self.text[self.emitted:end]
        self.emitted = max(self.emitted, end)
        return piece
