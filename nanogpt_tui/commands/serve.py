"""`nanogpt-tui serve`: the model behind an OpenAI-compatible HTTP API (needs the `[serve]` extra)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.errors import ConfigError
from nanogpt_tui.commands.generate import add_checkpoint_arguments, load_generator

API_KEY_ENV = "NANOGPT_TUI_API_KEY"


def model_name(checkpoint: Path) -> str:
    """The run's name for a run's checkpoint (runs/NAME/checkpoints/step_*.pt), else the file's or folder's name."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent.name
    return checkpoint.stem if checkpoint.is_file() else checkpoint.name


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"serving needs {err.name}, which is not installed",
                          hint="pip install 'nanogpt-tui[serve]'") from err
    from engine.serve.server import bind_socket, is_loopback, serve, url_of
    from engine.serve.service import ServedModel

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    sock = bind_socket(args.host, args.port)
    try:
        generator, loaded = load_generator(args)
        name = args.model_name or model_name(loaded.path)
        served = ServedModel(generator, name, template=args.template or "")
        url = url_of(sock)
        print(f"serving {name} at {url} (OpenAI-compatible; template {served.template}); Ctrl-C stops", file=sys.stderr)
        if not is_loopback(args.host) and not api_key:
            print(f"warning: listening on {args.host} without an API key: anyone who can reach this machine can "
                  f"use the model (set --api-key or {API_KEY_ENV})", file=sys.stderr)
        sys.stderr.flush()
        record = Path(args.record_dir) if args.record_dir else None
        serve(served, sock, api_key=api_key, record_dir=record, checkpoint=str(loaded.path))
    finally:
        sock.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    add_checkpoint_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (or set {API_KEY_ENV})")
    parser.add_argument("--model-name", help="the model's id in the API (default: the run's name)")
    parser.add_argument("--template", choices=("special", "plain"),
                        help="chat template (default: special when the tokenizer has chat tokens, else plain)")
    parser.add_argument("--record-dir", help=argparse.SUPPRESS)  # the app's process record for this server
    parser.set_defaults(func=cmd_serve)
