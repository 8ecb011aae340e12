"""`nanogpt-tui serve`: the model behind an OpenAI-compatible HTTP API (needs the `[serve]` extra)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import get_args

from engine.config import ChatTemplate
from nanogpt_tui.commands.generate import add_checkpoint_arguments
from nanogpt_tui.commands.options import number


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.runs import Workspace
    from engine.serve.server import API_KEY_ENV, require_serve_extra, serve_checkpoint

    require_serve_extra()
    resolved = Workspace().resolve_checkpoint(args.checkpoint)
    _say(f"checkpoint: {resolved.description}")
    if args.trust_pickle:
        _say("warning: --trust-pickle lets this file run code while it loads")
    serve_checkpoint(resolved.path, host=args.host, port=args.port,
                     api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                     record_dir=Path(args.record_dir) if args.record_dir else None, device=args.device,
                     template=args.template or "", model_name=args.model_name, trust_pickle=args.trust_pickle,
                     max_batch=args.max_batch, say=_say)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    add_checkpoint_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=number("port"), default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (or set NANOGPT_TUI_API_KEY)")
    parser.add_argument("--model-name", help="the model's id in the API (default: the run's name)")
    parser.add_argument("--max-batch", type=number("max_batch"), default=8,
                        help="requests decoded together at most (default 8; 1: one at a time, in arrival order)")
    parser.add_argument("--template", choices=get_args(ChatTemplate),
                        help="chat template (default: special when the tokenizer has chat tokens, else plain)")
    parser.add_argument("--record-dir", help=argparse.SUPPRESS)  # where a detached server keeps its server.json
    parser.set_defaults(func=cmd_serve)
