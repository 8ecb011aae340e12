"""Tokenising a folder of text and JSONL into shards round-trips, in order, with any number of workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.data.shards import _load_data_shard, read_shard_header
from engine.data.tokenize_files import TokenizeProgress, input_files, tokenize_to_shards
from engine.data.tokenizer import load_tokenizer, train_bpe
from engine.errors import DataError
from tests.helpers import VERSE

DOCUMENTS = [
    VERSE,
    "Alas, poor Yorick! I knew him, Horatio: a fellow of infinite jest.\n",
    "Now is the winter of our discontent\nMade glorious summer by this sun of York.",
    "Ünïcödé and emoji 🎭 survive the round trip.",
    "Friends, Romans, countrymen, lend me your ears;",
    "All the world's a stage, and all the men and women merely players.",
]


def _folder(root: Path) -> Path:
    folder = root / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(DOCUMENTS[0], encoding="utf-8")
    (folder / "sub" / "b.md").write_text(DOCUMENTS[1], encoding="utf-8")
    lines = [json.dumps({"text": doc, "id": i}) for i, doc in enumerate(DOCUMENTS[2:])]
    (folder / "c.jsonl").write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")
    (folder / "notes.csv").write_text("ignored,file\n")
    return folder


def _documents_in(files: list[Path], tokenizer) -> list[str]:
    tokens = np.concatenate([_load_data_shard(f).numpy() for f in files]).astype(np.int64)
    starts = np.flatnonzero(tokens == tokenizer.bos_id)
    assert starts[0] == 0, "every document must start with BOS"
    return [tokenizer.decode(tokens[a + 1 : b].tolist()) for a, b in zip(starts, [*starts[1:], len(tokens)])]


def test_input_files_are_sorted_and_filtered(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert [p.relative_to(folder).as_posix() for p in input_files(folder)] == ["a.txt", "c.jsonl", "sub/b.md"]


@pytest.mark.slow
def test_a_folder_round_trips_through_shards(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tokenizer = train_bpe(DOCUMENTS * 4, vocab_size=300)
    expected = [DOCUMENTS[0], *DOCUMENTS[2:], DOCUMENTS[1]]  # file order: a.txt, c.jsonl, sub/b.md
    events: list[TokenizeProgress] = []
    result = tokenize_to_shards(folder, tmp_path / "out", tokenizer, shard_tokens=150, val_period=3, workers=2,
                                progress=events.append)
    assert result.documents == len(expected)
    assert _documents_in(result.val_files, tokenizer) == expected[::3]
    assert _documents_in(result.train_files, tokenizer) == [d for i, d in enumerate(expected) if i % 3]
    assert [read_shard_header(f) for f in result.train_files[:-1]] == [150] * (len(result.train_files) - 1)
    assert result.train_tokens == sum(read_shard_header(f) for f in result.train_files)
    assert events[-1].bytes_done == events[-1].bytes_total and events[-1].documents == len(expected)
    assert load_tokenizer(tmp_path / "out" / "tokenizer").identifier == tokenizer.identifier

    # one process writes byte-identical shards
    single = tokenize_to_shards(folder, tmp_path / "single", tokenizer, shard_tokens=150, val_period=3, workers=1)
    for a, b in zip(result.train_files + result.val_files, single.train_files + single.val_files, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} depends on the number of workers"


def test_mistakes_are_data_errors(tmp_path: Path) -> None:
    tokenizer = train_bpe(DOCUMENTS, vocab_size=280)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: no string field 'text'"):
        tokenize_to_shards(bad, tmp_path / "o1", tokenizer, workers=1)
    assert not list((tmp_path / "o1").glob("*.bin")), "a failed run must not leave shards behind"
    bad.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:2: not a JSON object"):
        tokenize_to_shards(bad, tmp_path / "o2", tokenizer, workers=1)
    one = tmp_path / "one.txt"
    one.write_text("just one document", encoding="utf-8")
    with pytest.raises(DataError, match="all of them for validation"):
        tokenize_to_shards(one, tmp_path / "o3", tokenizer, workers=1)
    result = tokenize_to_shards(one, tmp_path / "o3", tokenizer, val_period=0, workers=1)
    assert result.val_files == [] and result.train_tokens > 1
    with pytest.raises(DataError, match="already holds shards"):
        tokenize_to_shards(one, tmp_path / "o3", tokenizer, val_period=0, workers=1)
    with pytest.raises(DataError, match="neither text nor JSONL"):
        input_files(tmp_path / "o3" / "train_000000.bin")
