"""The chat's commands: the original's quit/exit, clear and new (with or without a leading /) and the slash extras.

What each command (and its key) does to the chat is in `chat_state.py` (ChatBase).

Parsed here rather than with engine.inference.chat.parse_command, because engine.inference.chat imports torch and the
chat screen must be importable before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass


# the original's words, accepted bare too (a message that is just "quit" quits, as in the original's chat.py)
BARE_COMMANDS = {"quit": "quit", "exit": "quit", "clear": "clear", "new": "new"}
SLASH_COMMANDS = {**BARE_COMMANDS, "system": "system", "template": "template", "save": "save", "help": "help"}
NO_MODEL = "No model loaded: press ctrl+o to choose a checkpoint (or pick one on the Checkpoints screen and press c)."
HELP = (
    "Commands (each also has a key):\n"
    "  /quit, quit, exit     leave the app (ctrl+q); a running reply is stopped first\n"
    "  /clear                clear the view, keep the conversation (ctrl+l)\n"
    "  /new                  start a new conversation (ctrl+n)\n"
    "  /system <text>        set the system message; /system alone removes it (ctrl+r)\n"
    "  /template plain|special  how the conversation is written for the model (ctrl+f switches)\n"
    "  /save [path]          save the conversation as fine-tuning JSON (ctrl+s)\n"
    "Keys: Enter sends, Shift+Enter or Ctrl+J adds a line, Up recalls earlier prompts, Esc stops a reply,\n"
    "c copies the last reply, ctrl+o loads a checkpoint, F5/F6/F7 sampling presets."
)


@dataclass(frozen=True, slots=True)
class ChatCommand:
    """A command typed in the prompt: its canonical name and the rest of the line."""

    name: str
    argument: str = ""


class UnknownCommand(ValueError):
    """A line that starts with / but names no command."""


def parse_chat_command(line: str) -> ChatCommand | None:
    """The command a prompt line holds, None for a message; UnknownCommand for an unknown /word."""
    text = line.strip()
    bare = BARE_COMMANDS.get(text.lower())
    if bare is not None:
        return ChatCommand(bare)
    if not text.startswith("/") or text.startswith("//"):
        return None
    word, _, argument = text[1:].partition(" ")
    name = SLASH_COMMANDS.get(word.lower())
    if name is None:
        raise UnknownCommand(f"unknown command /{word}: type /help for the list (start with // to send a literal /)")
    return ChatCommand(name, argument.strip())
