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
    """Invalid configuration: unknown preset, malformed TOML, wrong type or value."""


class DataError(EngineError):
    """Missing or malformed data: corpus, shards, tokenizer, conversation files."""


class CheckpointError(EngineError):
    """A checkpoint that cannot be read, is foreign, truncated or does not fit the model."""


class DeviceError(EngineError):
    """The requested device cannot do the job: missing GPU, out of memory, too many processes."""


class RunError(EngineError):
    """A run directory that is missing, already exists, or is in the wrong state for the action."""
