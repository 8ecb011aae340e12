"""Turn a run's data config into a tokenizer plus train/val .bin shards, cached by content."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.config import DataConfig
from engine.errors import DataError


@dataclass(frozen=True)
class PreparedData:
    train_files: list[Path]
    val_files: list[Path]
    tokenizer: object  # engine.data.tokenizer.Tokenizer
    description: str


def _glob(pattern: str, what: str) -> list[Path]:
    files = [Path(f) for f in sorted(glob.glob(pattern))]
    if not files:
        raise DataError(
            f"no {what} shards match {pattern!r}",
            hint="download FineWeb shards with: nanogpt-tui data fineweb --shards 8, or fix data.train_files/val_files",
        )
    return files


def _load_run_tokenizer(run_dir: Path | None):
    from engine.data.tokenizer import load_tokenizer

    if run_dir is not None and (run_dir / "tokenizer").is_dir():
        return load_tokenizer(run_dir / "tokenizer")
    return None


def prepare_data(data: DataConfig, run_dir: Path | None, *, is_main: bool = True) -> PreparedData:
    """Rank 0 builds (or finds cached) shards; other ranks call this after a barrier to get the paths.

    A run's own `tokenizer/` folder wins over retraining, so a resumed run keeps its vocabulary.
    """
    from engine.data.corpus import corpus_hash, load_corpus, split_train_val
    from engine.data.shards import write_shard
    from engine.data.tokenizer import encode_documents, tokenizer_for

    if data.corpus == "shards":
        from engine.data.tokenizer import gpt2_tokenizer

        train_files = _glob(data.train_files, "training")
        # `nanogpt-tui data tokenize` saves its tokenizer beside the shards
        tokenizer = (_load_run_tokenizer(run_dir) or _load_run_tokenizer(train_files[0].parent)
                     or gpt2_tokenizer())
        val_files = _glob(data.val_files, "validation") if data.val_files else []
        if not val_files:
            raise DataError("data.val_files is empty", hint="set it to a glob of validation shards")
        return PreparedData(train_files, val_files, tokenizer, f"{len(train_files)} shard(s) {data.train_files}")

    documents = load_corpus(data.corpus)
    train_docs, val_docs = split_train_val(documents, data.val_fraction)
    tokenizer = _load_run_tokenizer(run_dir)
    if tokenizer is None:
        if not is_main:
            raise DataError("the run's tokenizer is missing", hint="rank 0 saves it before the other ranks load it")
        # trained on the training split only: the held-out text stays unseen, even by the vocabulary
        tokenizer = tokenizer_for(data, train_docs)
        if run_dir is not None:
            tokenizer.save(run_dir / "tokenizer")
    key = f"{corpus_hash(documents)}-{tokenizer.identifier}-{data.val_fraction}"
    shard_dir = paths.cache_dir() / "shards" / key
    train_path, val_path = shard_dir / "train_000000.bin", shard_dir / "val_000000.bin"
    if is_main and not (train_path.exists() and val_path.exists()):
        write_shard(val_path, encode_documents(tokenizer, val_docs))
        write_shard(train_path, encode_documents(tokenizer, train_docs))
    name = "embedded Shakespeare" if data.corpus == "shakespeare" else data.corpus
    return PreparedData([train_path], [val_path], tokenizer, f"{name} ({len(documents)} documents)")


def token_byte_lengths(tokenizer) -> list[int]:
    """UTF-8 length of every token id (0 for special tokens), for bits-per-byte."""
    special = set(tokenizer.special_tokens.values())
    return [0 if i in special else len(tokenizer.decode_bytes([i])) for i in range(tokenizer.vocab_size)]
