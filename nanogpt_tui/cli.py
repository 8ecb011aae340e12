"""Headless subcommands. Each command group lives in nanogpt_tui/commands/ and registers itself.

User mistakes (EngineError) print `error: …` and `hint: …` and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from engine.errors import EngineError, cli_lines

# modules in nanogpt_tui.commands with `register(subparsers)`; each sets `func` on its parser
COMMAND_MODULES = ["train", "finetune", "runs", "evaluate", "chat", "generate", "import_cmd", "export", "serve", "data", "estimate"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 with usage; keep the one-line style and exit code 1 of other mistakes
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nanogpt-tui", description="Train, fine-tune, evaluate and chat with GPT models. "
                     "Run without arguments to open the app.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"nanogpt_tui.commands.{name}").register(subparsers)
    return parser


def print_error(err: EngineError) -> None:
    print(cli_lines(err), file=sys.stderr)


def run_cli(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args) or 0
    except EngineError as err:
        print_error(err)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
