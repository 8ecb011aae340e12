"""`nanogpt-tui export`: a checkpoint as safetensors, a Hugging Face transformers folder or the original's .pt."""

from __future__ import annotations

import argparse
import sys

from nanogpt_tui.commands.generate import CHECKPOINT_HELP


def cmd_export(args: argparse.Namespace) -> int:
    from engine.export import export_checkpoint
    from engine.runs import Workspace

    resolved = Workspace().resolve_checkpoint(args.checkpoint)
    print(f"checkpoint: {resolved.description}", file=sys.stderr)
    if args.trust_pickle:
        print("warning: --trust-pickle lets this file run code while it loads", file=sys.stderr)
    result = export_checkpoint(resolved.path, args.out, args.format, trust_pickle=args.trust_pickle)
    for note in result.notes:
        print(f"note: {note}")
    print(f"exported to {result.out_dir}: {', '.join(result.files)}")
    if args.format == "hf":
        print(f"try: AutoModelForCausalLM.from_pretrained({str(result.out_dir)!r}, trust_remote_code=True)")
    elif args.format == "safetensors":
        print(f"import it back with: nanogpt-tui import {result.out_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a checkpoint to safetensors, Hugging Face transformers "
                                   "or the original modded-nanogpt format")
    parser.add_argument("checkpoint", nargs="?", default=None, metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to create (must not exist or be empty)")
    parser.add_argument("--format", default="safetensors", choices=("safetensors", "hf", "original"),
                        help="safetensors: model.safetensors + config.json + tokenizer; hf: also transformers' "
                        "modeling code (trust_remote_code); original: a state_step*.pt the original's model.py loads")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a checkpoint that pickles Python objects (the original's finetune.py output)")
    parser.set_defaults(func=cmd_export)
