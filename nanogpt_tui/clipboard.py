"""Copying text: OSC 52 through the terminal (works over SSH) and the local clipboard tool when there is one."""

from __future__ import annotations

import os
import shutil
import subprocess

from textual.widget import Widget

# (command, environment variable that must be set for it to reach the user's clipboard)
CLIPBOARD_TOOLS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("pbcopy",), None),
    (("wl-copy",), "WAYLAND_DISPLAY"),
    (("xclip", "-selection", "clipboard"), "DISPLAY"),
    (("xsel", "--clipboard", "--input"), "DISPLAY"),
)
TOOL_TIMEOUT_S = 3.0


def system_clipboard_command() -> list[str] | None:
    """The local clipboard tool, or None over SSH (the remote machine's clipboard is not the user's)."""
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return None
    for command, needs in CLIPBOARD_TOOLS:
        if shutil.which(command[0]) and (needs is None or os.environ.get(needs)):
            return list(command)
    return None


def _run_tool(command: list[str], text: str) -> None:
    subprocess.run(command, input=text.encode("utf-8"), check=True, timeout=TOOL_TIMEOUT_S,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def copy_text(node: Widget, text: str, what: str) -> None:
    """Copy `text` and tell the user; a failing local tool shows up through the node's worker errors."""
    node.app.copy_to_clipboard(text)
    command = system_clipboard_command()
    if command is not None:
        node.run_worker(lambda: _run_tool(command, text), thread=True, group="clipboard", exit_on_error=False)
    where = f"clipboard ({command[0]} and OSC 52)" if command else "clipboard (OSC 52 via the terminal)"
    node.notify(f"Copied {what} to the {where}.", timeout=3)
