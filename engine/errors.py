"""One exception tree for every failure a user can cause or fix.

Each error carries a message (what went wrong) and a hint (what to do about it);
the CLI prints both on two lines and exits 1, the TUI shows them as a notification.
"""

from __future__ import annotations


class EngineError(Exception):
    """A failure explained for the user: `message` says what, `hint` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(EngineError):
    """Invalid configuration: unknown preset, malformed TOML, wrong type or value.

    `key` is the dotted config key (or option) it is about, when there is one, so a form can put the
    message beside that field without reading it out of the text.
    """

    def __init__(self, message: str, hint: str = "", key: str | None = None) -> None:
        super().__init__(message, hint)
        self.key = key


class DataError(EngineError):
    """Missing or malformed data: corpus, shards, tokenizer, conversation files."""


class CheckpointError(EngineError):
    """A checkpoint that cannot be read, is foreign, truncated or does not fit the model."""


class DeviceError(EngineError):
    """The requested device cannot do the job: missing GPU, out of memory, too many processes."""


class RunError(EngineError):
    """A run directory that is missing, already exists, or is in the wrong state for the action."""


def describe(error: BaseException) -> str:
    """An error as the app shows it: an EngineError's message and hint on two lines, anything else with its class."""
    if isinstance(error, EngineError):
        return f"{error.message}\n{error.hint}" if error.hint else error.message
    return f"{type(error).__name__}: {error}"


def cli_lines(error: EngineError, detail: str = "") -> str:
    """An error as the CLI and the training processes print it: `error: …` and, if any, `hint: …`."""
    text = f"error: {error.message}" + (f": {detail}" if detail else "")
    return text + (f"\nhint: {error.hint}" if error.hint else "")
