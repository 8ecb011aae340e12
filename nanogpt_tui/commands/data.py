"""`nanogpt-tui data fineweb` (download the speedrun's shards) and `data tokenize` (text/JSONL -> shards)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import DataError
from nanogpt_tui.commands.options import number


def default_fineweb_dir() -> Path:
    return paths.data_dir() / "fineweb10B"


def _train_hint(train_glob: Path, val_glob: Path, extra: str = "") -> str:
    return (f"train on them with:\n  nanogpt-tui train --preset speedrun-124m{extra} "
            f"--set \"data.train_files='{train_glob}'\" --set \"data.val_files='{val_glob}'\"")


def cmd_fineweb(args: argparse.Namespace) -> int:
    from engine.data.fineweb import ShardProgress, download_fineweb

    dest = Path(args.dest).expanduser().resolve() if args.dest else default_fineweb_dir()

    def show(event: ShardProgress) -> None:
        # huggingface_hub draws a byte-level progress bar for each file being fetched
        words = {"skipped": "already complete", "downloading": "downloading…", "done": "ok"}
        print(f"[{event.index}/{event.total}] {event.name}: {words[event.state]}", flush=True)

    files = download_fineweb(args.shards, dest, progress=show)
    print(f"{len(files)} shard(s) in {dest}")
    print(_train_hint(dest / "fineweb_train_*.bin", dest / "fineweb_val_*.bin"))
    return 0


def resolve_tokenizer(spec: str) -> Any:
    """"gpt2", a folder holding a saved tokenizer (or a run folder), or the name of a run."""
    from engine.data.tokenizer import gpt2_tokenizer, load_tokenizer
    from engine.runs import Workspace

    if spec == "gpt2":
        return gpt2_tokenizer()
    path = Path(spec).expanduser()
    if not path.is_dir():
        path = Workspace().runs.run_dir(spec)
        if not path.is_dir():
            raise DataError(f"no run or tokenizer folder named {spec!r}",
                            hint="use --tokenizer gpt2, a run name (see: nanogpt-tui runs) or a tokenizer folder")
    return load_tokenizer(path / "tokenizer" if (path / "tokenizer").is_dir() else path)


def cmd_tokenize(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from engine.data.tokenize_files import TokenizeProgress, tokenize_to_shards

    tokenizer = resolve_tokenizer(args.tokenizer)
    out = Path(args.out).expanduser().resolve()
    columns = (TextColumn("tokenizing"), BarColumn(), DownloadColumn(),
               TextColumn("{task.fields[documents]:,} docs, {task.fields[tokens]:,} tokens"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("tokenize", total=None, documents=0, tokens=0)

        def show(event: TokenizeProgress) -> None:
            bar.update(task, completed=event.bytes_done, total=event.bytes_total, documents=event.documents,
                       tokens=event.tokens)

        result = tokenize_to_shards(Path(args.path), out, tokenizer, shard_tokens=args.shard_tokens,
                                    val_period=args.val_every, workers=args.workers, field=args.field,
                                    progress=show)
    print(f"{result.documents:,} documents: {result.train_tokens:,} training tokens in {len(result.train_files)} "
          f"shard(s), {result.val_tokens:,} validation tokens in {len(result.val_files)}, in {out}")
    if tokenizer.kind == "gpt2":
        print(_train_hint(out / "train_*.bin", out / "val_*.bin"))
    else:
        print(f"the shards use the tokenizer saved in {out / 'tokenizer'} "
              f"(vocabulary {tokenizer.vocab_size}, BOS id {tokenizer.bos_id})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="download FineWeb shards or tokenize your own text into shards")
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", parser_class=type(data))
    data.set_defaults(func=lambda args: data.print_help() or 0)

    fineweb = commands.add_parser("fineweb", help="download the GPT-2-tokenised FineWeb-10B shards of the speedrun")
    fineweb.add_argument("--shards", type=number("shards"), default=8,
                         help="training shards of 100M tokens (1..103, default 8)")
    fineweb.add_argument("--dest", help=f"folder (default: {default_fineweb_dir()})")
    fineweb.set_defaults(func=cmd_fineweb)

    tokenize = commands.add_parser("tokenize", help="turn text files or JSONL into .bin shards")
    tokenize.add_argument("path", help="a .txt/.md file, a .jsonl file, or a folder of them")
    tokenize.add_argument("--out", required=True, help="folder for train_*.bin, val_*.bin and the tokenizer")
    tokenize.add_argument("--tokenizer", default="gpt2", help="gpt2 (default), a run name, or a tokenizer folder")
    tokenize.add_argument("--field", default="text", help="the text field of JSONL records (default: text)")
    tokenize.add_argument("--val-every", type=number("val_every"), default=100,
                          help="every Nth document goes to validation (default 100; 0 = none)")
    tokenize.add_argument("--shard-tokens", type=number("shard_tokens"), default=100_000_000,
                          help="tokens per shard (default 100M)")
    tokenize.add_argument("--workers", type=number("workers"), default=os.cpu_count() or 1,
                          help="processes (default: all cores)")
    tokenize.set_defaults(func=cmd_tokenize)
