"""`nanogpt-tui chat`: the original's chat.py as a terminal program; replies stream, Ctrl-C stops a reply."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import get_args

from engine.config import ChatTemplate
from engine.errors import DataError
from nanogpt_tui.commands.generate import (
    add_checkpoint_arguments,
    add_sampling_arguments,
    load_generator,
    sampling_params,
)

BANNER = "commands: quit (or exit), clear (clear the screen), new (new conversation); also with a leading /\n" \
         "Ctrl-C stops the current reply; Ctrl-D or quit leaves."


@contextmanager
def interrupt_sets(cancel: threading.Event) -> Iterator[None]:
    """While inside, Ctrl-C sets `cancel` instead of raising KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_chat(args: argparse.Namespace) -> int:
    from engine.inference.chat import ChatSession, ContextTrimmed, parse_command
    from engine.inference.generate import CANCELLED, TokenChunk
    from engine.text_input import ask, check_text, tolerant_stdin
    from nanogpt_tui.cli import print_error

    params = sampling_params(args)
    system = check_text(args.system or "", "--system")
    generator, _ = load_generator(args)
    session = ChatSession(generator, params, template=args.template or "", system=system)
    print(f"template: {session.template}; context {generator.max_context} tokens (older turns are dropped past it), "
          f"the model reads the last {generator.attention_span}\n{BANNER}")
    tolerant_stdin()  # a line with bytes that are not UTF-8 is refused below, and the chat goes on
    while True:
        try:
            line = ask("\nYou: ")  # None at the end of input, or with stdin closed
        except KeyboardInterrupt:
            print()
            line = None
        if line is None:
            break
        try:
            check_text(line, "your message")
        except DataError as err:
            print_error(err)
            continue
        command = parse_command(line)
        if command == "quit":
            break
        if command == "clear":
            # ANSI clear screen and cursor home; a pipe gets nothing
            if sys.stdout.isatty():
                sys.stdout.write("\033[2J\033[H")
            continue
        if command == "new":
            session.new()
            print("started a new conversation")
            continue
        if not line.strip():
            continue
        cancel = threading.Event()
        sys.stdout.write("Assistant: ")
        with interrupt_sets(cancel):
            for event in session.send(line.strip(), cancel):
                if isinstance(event, ContextTrimmed):
                    print(f"(context full: dropped the {event.dropped_messages} oldest message(s)"
                          + ("" if event.fits else "; only the end of your message fits") + ")", file=sys.stderr)
                elif isinstance(event, TokenChunk):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    if event.finish_reason == CANCELLED:
                        sys.stdout.write(" [stopped]")
        sys.stdout.write("\n")
    print("bye")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal")
    add_checkpoint_arguments(parser)
    parser.add_argument("--template", choices=get_args(ChatTemplate),
                        help="chat template (default: special when the tokenizer has chat tokens, else plain)")
    parser.add_argument("--system", help="a system message that starts every conversation")
    add_sampling_arguments(parser)
    parser.set_defaults(func=cmd_chat)
