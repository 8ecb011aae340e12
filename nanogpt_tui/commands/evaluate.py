"""`nanogpt-tui eval`: validation loss and bits per byte of a checkpoint, then samples from prompts."""

from __future__ import annotations

import argparse
import sys

from nanogpt_tui.commands.generate import (
    add_checkpoint_arguments,
    add_sampling_arguments,
    load_generator,
    sampling_params,
)
from nanogpt_tui.commands.options import number

# tokens per evaluation forward pass by default: fast on CPU without large attention matrices
BATCH_TOKENS = 4096


def _progress(fraction: float) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\revaluating {fraction:4.0%}")
        sys.stderr.flush()
        if fraction >= 1.0:
            sys.stderr.write("\n")


def cmd_eval(args: argparse.Namespace) -> int:
    from engine.inference.evaluate import default_eval_seq_len, eval_data, evaluate_model, generate_samples
    from engine.text_input import check_text

    params = sampling_params(args)
    prompts = [check_text(prompt, "--prompt") for prompt in args.prompt or []]  # refused before a model loads
    generator, loaded = load_generator(args)
    hp = loaded.hyperparameters
    rows: list[tuple[str, str]] = [("checkpoint", str(loaded.path)), ("step", str(loaded.step))]
    if not args.no_loss:
        data = eval_data(args.data, generator.tokenizer, hp)
        seq_len = args.seq_len or default_eval_seq_len(hp, generator.max_context)
        data_config = (hp or {}).get("data") or {}
        max_tokens = args.max_eval_tokens if args.max_eval_tokens is not None else int(data_config.get("val_tokens", 0))
        batch_size = args.batch_size or max(1, BATCH_TOKENS // seq_len)
        report = evaluate_model(generator.model, generator.tokenizer, data, seq_len=seq_len, batch_size=batch_size,
                                max_tokens=max_tokens, device=generator.device, progress=_progress)
        rows += [("data", report.data), ("tokens", f"{report.tokens:,}"), ("bytes", f"{report.bytes:,}"),
                 ("row length", str(report.seq_len)), ("val loss", f"{report.loss:.4f}"),
                 ("bits per byte", f"{report.bpb:.4f}"), ("time", f"{report.seconds:.1f} s")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    prompts = prompts or [str(((hp or {}).get("run") or {}).get("sample_prompt", ""))]
    if args.samples and params.max_new_tokens:
        for sample in generate_samples(generator, prompts * args.samples, params):
            print(f"\n--- sample ({sample.finish_reason}) ---\n{sample.prompt}{sample.text}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="validation loss, bits per byte and samples of a checkpoint")
    add_checkpoint_arguments(parser)
    parser.add_argument("--data", help="a text file or folder, .bin shards (a glob is fine) or 'shakespeare'; "
                        "default: the held-out split the run validated on")
    parser.add_argument("--max-eval-tokens", type=number("max_eval_tokens"),
                        help="evaluate at most this many tokens (0 = all; default: the run's data.val_tokens)")
    parser.add_argument("--seq-len", type=number("seq_len"),
                        help="tokens per evaluated row (default: the run's val_seq_len, at most 2048)")
    parser.add_argument("--batch-size", type=number("batch_size"),
                        help=f"rows per forward pass (default: about {BATCH_TOKENS} tokens' worth)")
    parser.add_argument("--no-loss", action="store_true", help="only generate samples")
    parser.add_argument("--prompt", action="append", help="a prompt to sample from (repeatable; default: the run's sample prompt)")
    parser.add_argument("--samples", type=number("samples"), default=1, help="samples per prompt (default 1; 0 = none)")
    add_sampling_arguments(parser, max_tokens=100)
    parser.set_defaults(func=cmd_eval)
