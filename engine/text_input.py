"""The one policy for text that enters from outside: it must be valid Unicode, or it is refused with its place.

Every way text arrives ends here before a tokenizer sees it: bytes from files and stdin are decoded as
strict UTF-8 (`decode_utf8`); strings from the command line, from stdin read as text and from the
app's inputs may carry undecodable bytes as lone surrogates (Python's surrogateescape) or lone
surrogates from a JSON escape such as "\\ud800", and `check_text` refuses those. The error names the
source and the byte (or character) offset, so the user can find and fix the spot; nothing is replaced
silently, because a replaced prompt or training text would be a different text than the user's.
"""

from __future__ import annotations

import sys
from typing import Any

from engine.errors import DataError

HINT = "save the text as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE`), or remove the stray bytes"


def decode_utf8(raw: bytes, source: str, *, hint: str = HINT) -> str:
    """`raw` as UTF-8 (a leading BOM dropped); DataError naming the source and the first bad byte's offset."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{source} is not UTF-8 text (invalid byte 0x{raw[err.start]:02x} at offset {err.start})",
                        hint=hint) from err


def text_problem(text: str) -> str | None:
    """What makes a str not valid Unicode (said after its source's name), None when it is fine."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = text[err.start]
        if "\udc80" <= char <= "\udcff":
            # a byte the terminal or OS could not decode, kept by surrogateescape: report it as a byte
            offset = len(text[:err.start].encode("utf-8", "surrogateescape"))
            return f"is not UTF-8 text (invalid byte 0x{ord(char) - 0xdc00:02x} at offset {offset})"
        return f"holds an unpaired surrogate U+{ord(char):04X} at character {err.start}, which is not text"
    return None


def check_text(text: Any, source: str, *, hint: str = HINT) -> str:
    """`text` itself when it is a str of valid Unicode; bytes are decoded as UTF-8; anything else is refused."""
    if isinstance(text, (bytes, bytearray)):
        return decode_utf8(bytes(text), source, hint=hint)
    if not isinstance(text, str):
        raise DataError(f"{source}: expected text, got {type(text).__name__}")
    problem = text_problem(text)
    if problem is not None:
        raise DataError(f"{source} {problem}", hint=hint)
    return text


def read_stdin(source: str = "stdin") -> str:
    """All of standard input as text, decoded by the same rule as a file."""
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise DataError(f"{source}: standard input is closed", hint="pipe the text in, or give it as an argument")
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream put in its place (an embedding program, a test)
        return check_text(sys.stdin.read(), source)
    return decode_utf8(buffer.read(), source)


def ask(question: str) -> str | None:
    """The user's answer to a question on the terminal; None when no answer can come (EOF, stdin closed)."""
    try:
        return input(question)
    except EOFError:
        print()
        return None
    except RuntimeError:  # input(): lost sys.stdin
        return None


def tolerant_stdin() -> None:
    """Make input() keep undecodable bytes (as surrogates) instead of raising, so check_text can report them."""
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")
