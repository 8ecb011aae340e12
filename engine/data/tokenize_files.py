"""Text files and JSONL into .bin shards, tokenised by several processes: `nanogpt-tui data tokenize`.

A document is one text file (.txt, .md, .text) or one JSONL line's text field. Each document is
written as BOS + its tokens, in input order (files sorted by path), whatever the number of workers.
Every `val_period`-th document (the first included; none for 0) goes to `val_*.bin`, the rest to `train_*.bin`;
shards hold `shard_tokens` tokens each (the last one fewer), and documents may span two shards.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DataError
from engine.paths import make_dir
from engine.text_input import check_text, decode_utf8

TEXT_SUFFIXES = (".txt", ".md", ".text")
JSONL_SUFFIXES = (".jsonl",)
# documents handed to a worker at once: big enough to amortise the pickling, small enough to balance
BATCH_CHARS = 1 << 20
MAX_TOKEN_ID = (1 << 16) - 1


@dataclass(frozen=True, slots=True)
class TokenizeProgress:
    bytes_done: int
    bytes_total: int
    documents: int
    tokens: int


@dataclass(frozen=True, slots=True)
class TokenizeResult:
    train_files: list[Path]
    val_files: list[Path]
    documents: int
    train_tokens: int
    val_tokens: int


def input_files(path: Path) -> list[Path]:
    """The text/JSONL files at `path` (a file, or a folder searched recursively), sorted."""
    path = Path(path).expanduser()
    suffixes = TEXT_SUFFIXES + JSONL_SUFFIXES
    if path.is_file():
        if path.suffix.lower() not in suffixes:
            raise DataError(f"{path} is neither text nor JSONL", hint=f"give files ending in {', '.join(suffixes)}")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"{path} holds no {', '.join(suffixes)} files")
        return files
    raise DataError(f"{path} does not exist", hint="give a text file, a .jsonl file or a folder of them")


def _documents(files: Sequence[Path], field: str) -> Iterator[tuple[str | None, int]]:
    """(document text, bytes of input it used), file by file and line by line; None for a blank line."""
    for path in files:
        try:
            if path.suffix.lower() in JSONL_SUFFIXES:
                with path.open("rb") as handle:
                    for number, raw in enumerate(handle, start=1):
                        yield (_jsonl_text(raw, field, f"{path}:{number}") if raw.strip() else None), len(raw)
            else:
                raw = path.read_bytes()
                yield decode_utf8(raw, str(path)).replace("\r\n", "\n"), len(raw)
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}") from err


def _jsonl_text(raw: bytes, field: str, where: str) -> str:
    try:
        record = json.loads(decode_utf8(raw, where))
    except (ValueError, RecursionError) as err:
        raise DataError(f"{where}: not a JSON object ({err})", hint="JSONL holds one JSON object per line") from err
    text = record.get(field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise DataError(f"{where}: no string field {field!r}", hint="name the text field with --field")
    return check_text(text, f"{where}: {field}")


# ------------------------------------------------------------------------ workers

_worker_tokenizer: Any = None


def _init_worker(payload: dict[str, str]) -> None:
    global _worker_tokenizer
    from engine.data.tokenizer import tokenizer_from_payload

    _worker_tokenizer = tokenizer_from_payload(payload)


def _encode_batch(documents: list[str]) -> list[np.ndarray]:
    """BOS + tokens of each document, as uint16 arrays."""
    tokenizer = _worker_tokenizer
    return [np.array([tokenizer.bos_id, *tokenizer.encode(doc)], dtype=np.uint16) for doc in documents]


def _batches(documents: Iterator[tuple[str | None, int]]) -> Iterator[tuple[list[str], int]]:
    batch: list[str] = []
    chars = size = 0
    for text, nbytes in documents:
        size += nbytes
        if text is None:
            continue
        batch.append(text)
        chars += len(text)
        if chars >= BATCH_CHARS:
            yield batch, size
            batch, chars, size = [], 0, 0
    if batch or size:
        yield batch, size


class _ShardWriter:
    """Buffers token arrays and writes `<prefix>_NNNNNN.bin` shards of exactly shard_tokens (the last fewer)."""

    def __init__(self, out_dir: Path, prefix: str, shard_tokens: int) -> None:
        self.out_dir, self.prefix, self.shard_tokens = out_dir, prefix, shard_tokens
        self.pending: list[np.ndarray] = []
        self.pending_tokens = 0
        self.total = 0
        self.files: list[Path] = []

    def add(self, tokens: np.ndarray) -> None:
        self.pending.append(tokens)
        self.pending_tokens += len(tokens)
        self.total += len(tokens)
        while self.pending_tokens >= self.shard_tokens:
            joined = np.concatenate(self.pending)
            self._write(joined[: self.shard_tokens])
            rest = joined[self.shard_tokens :]
            self.pending, self.pending_tokens = [rest], len(rest)

    def finish(self) -> list[Path]:
        if self.pending_tokens:
            self._write(np.concatenate(self.pending))
        self.pending, self.pending_tokens = [], 0
        return self.files

    def _write(self, tokens: np.ndarray) -> None:
        from engine.data.shards import write_shard

        path = self.out_dir / f"{self.prefix}_{len(self.files):06d}.bin"
        write_shard(path, tokens)
        self.files.append(path)


def _encoded(batches: Iterator[tuple[list[str], int]], payload: dict[str, str],
             workers: int) -> Iterator[tuple[list[np.ndarray], int]]:
    """Encoded batches in input order; at most 2 x workers batches in flight, so memory stays bounded."""
    if workers <= 1:
        _init_worker(payload)
        for batch, size in batches:
            yield _encode_batch(batch), size
        return
    # spawn: no forked copy of the parent's threads (tokenizers, torch) that could deadlock a child
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(payload,)) as pool:
        in_flight: deque[tuple[Any, int]] = deque()
        for batch, size in batches:
            in_flight.append((pool.apply_async(_encode_batch, (batch,)), size))
            if len(in_flight) >= 2 * workers:
                result, done = in_flight.popleft()
                yield result.get(), done
        while in_flight:
            result, done = in_flight.popleft()
            yield result.get(), done


def tokenize_to_shards(path: Path, out_dir: Path, tokenizer: Any, *, shard_tokens: int = 100_000_000,
                       val_period: int = 100, workers: int | None = None, field: str = "text",
                       progress: Callable[[TokenizeProgress], None] | None = None) -> TokenizeResult:
    """Tokenise everything at `path` into out_dir/train_*.bin and val_*.bin; saves the tokenizer to out_dir/tokenizer."""
    if shard_tokens < 1 or val_period < 0:
        raise DataError(f"shard tokens ({shard_tokens}) must be positive and the validation period ({val_period}) >= 0")
    if tokenizer.vocab_size - 1 > MAX_TOKEN_ID:
        raise DataError(f"the tokenizer has {tokenizer.vocab_size} tokens; shards store ids up to {MAX_TOKEN_ID}")
    files = input_files(path)
    out_dir = Path(out_dir).expanduser()
    existing = sorted(out_dir.glob("train_*.bin")) + sorted(out_dir.glob("val_*.bin"))
    if existing:
        raise DataError(f"{out_dir} already holds shards ({existing[0].name}, …)",
                        hint="choose another --out, or delete the old shards first")
    make_dir(out_dir, "output folder")
    bytes_total = sum(f.stat().st_size for f in files)
    train = _ShardWriter(out_dir, "train", shard_tokens)
    val = _ShardWriter(out_dir, "val", shard_tokens)
    report = progress or (lambda event: None)
    bytes_done = documents = 0
    batches = _batches(_documents(files, field))
    try:
        for encoded, size in _encoded(batches, tokenizer.to_payload(), workers or os.cpu_count() or 1):
            for tokens in encoded:
                (val if val_period and documents % val_period == 0 else train).add(tokens)
                documents += 1
            bytes_done += size
            report(TokenizeProgress(bytes_done, bytes_total, documents, train.total + val.total))
        if not train.total:
            raise DataError(f"{path} gave {documents} document(s), all of them for validation",
                            hint="split the text into more files (or JSONL lines), or pass --val-every 0")
        result = TokenizeResult(train.finish(), val.finish(), documents, train.total, val.total)
    except BaseException:
        # half a dataset would be taken for a whole one, and would block the next attempt
        for written in train.files + val.files:
            written.unlink(missing_ok=True)
        raise
    tokenizer.save(out_dir / "tokenizer")
    return result
