"""`nanogpt-tui generate`: print a completion (for scripts); also the checkpoint and sampling options
that `chat` and `eval` share."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.config import choices
from nanogpt_tui.commands.options import number

CHECKPOINT_HELP = ("a checkpoint file, a run name (its newest checkpoint), a folder, or nothing "
                   "(the newest checkpoint of the newest run)")


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None, metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load a checkpoint that pickles Python objects (the original's finetune.py output); "
                        "this can run code from the file, so only for files you trust")
    parser.add_argument("--device", default="auto", choices=choices("run.device"),
                        help="where the model runs (auto: CUDA, then MPS, then CPU)")


def add_sampling_arguments(parser: argparse.ArgumentParser, *, max_tokens: int | None = None) -> None:
    """The sampling flags, with the engine's defaults (the app's sliders start from the same)."""
    from engine.sampling_params import SamplingParams

    d = SamplingParams()
    max_tokens = d.max_new_tokens if max_tokens is None else max_tokens
    parser.add_argument("--temperature", type=number("temperature"), default=d.temperature, help=f"0 = greedy (default {d.temperature})")
    parser.add_argument("--top-k", type=number("top_k"), default=d.top_k,
                        help=f"sample among the k likeliest tokens; 0 = all (default {d.top_k})")
    parser.add_argument("--top-p", type=number("top_p"), default=d.top_p,
                        help=f"nucleus sampling mass; 1 = off (default {d.top_p})")
    parser.add_argument("--max-tokens", type=number("max_new_tokens"), default=max_tokens,
                        help=f"new tokens at most (default {max_tokens})")
    parser.add_argument("--repetition-penalty", type=number("repetition_penalty"), default=d.repetition_penalty,
                        help=f"> 1 discourages repeats (default {d.repetition_penalty:g})")
    parser.add_argument("--seed", type=number("seed"), default=d.seed, help="random seed; the same seed repeats a sample")
    parser.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at this text (repeatable)")


def sampling_params(args: argparse.Namespace) -> Any:
    from engine.sampling_params import SamplingParams
    from engine.text_input import check_text

    stops = tuple(check_text(stop, "--stop") for stop in args.stop)
    params = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            max_new_tokens=args.max_tokens, seed=args.seed, stop_strings=stops,
                            repetition_penalty=args.repetition_penalty)
    params.validate()
    return params


def load_generator(args: argparse.Namespace) -> tuple[Any, Any]:
    """(Generator, LoadedCheckpoint) for the chosen checkpoint; says on stderr which one and what was assumed."""
    from engine.inference.generate import Generator
    from engine.importer import load_model
    from engine.runs import Workspace

    resolved = Workspace().resolve_checkpoint(args.checkpoint)
    print(f"checkpoint: {resolved.description}", file=sys.stderr)
    if args.trust_pickle:
        print("warning: --trust-pickle lets this file run code while it loads", file=sys.stderr)
    loaded = load_model(resolved.path, trust_pickle=args.trust_pickle)
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    generator = Generator.from_checkpoint(loaded, device=args.device)
    print(f"model: {loaded.model.num_params() / 1e6:.1f}M parameters ({loaded.source_format}, step {loaded.step}) "
          f"on {generator.device}, context {generator.max_context} tokens", file=sys.stderr)
    return generator, loaded


def cmd_generate(args: argparse.Namespace) -> int:
    from engine.text_input import check_text, read_stdin

    prompt = read_stdin("the prompt on stdin") if args.prompt == "-" else check_text(args.prompt, "--prompt")
    params = sampling_params(args)
    generator, _ = load_generator(args)
    if args.echo:
        sys.stdout.write(prompt)
    for chunk in generator.generate(generator.encode_prompt(prompt), params):
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="print a completion of a prompt")
    add_checkpoint_arguments(parser)
    parser.add_argument("--prompt", required=True, help="the text to continue; '-' reads it from stdin")
    parser.add_argument("--echo", action="store_true", help="print the prompt before the completion")
    add_sampling_arguments(parser, max_tokens=200)
    parser.set_defaults(func=cmd_generate)
