"""`nanogpt-tui import`: a modded-nanogpt checkpoint (the original's or its fine-tune output) or an export folder as a run."""

from __future__ import annotations

import argparse
import sys


def cmd_import(args: argparse.Namespace) -> int:
    from engine.importer import import_checkpoint

    if args.trust_pickle:
        print("warning: --trust-pickle lets this file run code while it loads", file=sys.stderr)
    result = import_checkpoint(args.path, args.name, trust_pickle=args.trust_pickle)
    for note in result.notes:
        print(f"note: {note}")
    print(f"imported {args.path} as run {result.name}: {result.checkpoint}")
    print(f"try: nanogpt-tui chat {result.name}   or   nanogpt-tui eval {result.name} --data FILE")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("import", help="import a modded-nanogpt state_step*.pt (or the original's "
                                   "finetune output, or a folder from nanogpt-tui export) as a run")
    parser.add_argument("path", help="the checkpoint file, or an export folder (model.safetensors + config.json)")
    parser.add_argument("--name", help="run name (default: derived from the file)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a file that pickles Python objects (the original's finetune.py output); "
                        "this can run code from the file, so only for files you trust")
    parser.set_defaults(func=cmd_import)
