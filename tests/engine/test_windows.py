"""Shuffled training rows (data.sampling = "shuffled"): coverage, rank shares, exact resume, errors.

A resume under the other sampling is refused by the trainer (tests/engine/test_pretraining.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.data.shards import write_shard
from engine.data import windows
from engine.data.windows import ShuffledRowStream
from engine.errors import DataError


def _stream(path: Path, **kwargs: int) -> ShuffledRowStream:
    args = {"rows_per_rank": 4, "seq_len": 16, "rank": 0, "world_size": 1, "seed": 7} | kwargs
    return ShuffledRowStream([path], args.pop("rows_per_rank"), args.pop("seq_len"), **args)


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    path = tmp_path / "train_000000.bin"
    write_shard(path, list(range(1000)))  # token i at offset i, so a row's first token is its offset
    return path


def test_rows_are_contiguous_windows_and_one_epoch_reads_each_row_once(shard: Path) -> None:
    stream = _stream(shard)
    starts = []
    while stream.state_dict()["epoch"] == 0:
        inputs, targets = next(stream)
        rows_in, rows_out = inputs.view(4, 16), targets.view(4, 16)
        assert torch.equal(rows_out, rows_in + 1), "targets are the inputs shifted by one token"
        assert torch.equal(rows_in, rows_in[:, :1] + torch.arange(16)), "a row is a contiguous window"
        starts += rows_in[:, 0].tolist()
    first_epoch = starts[: len(starts) - stream.state_dict()["row"]]
    offset = first_epoch[0] % 16
    assert sorted(first_epoch) == list(range(offset, 999 - 16 + 1, 16)), "an epoch covers its grid once"
    assert first_epoch != sorted(first_epoch), "the rows come shuffled, not front to back"


def test_two_ranks_share_the_rows_of_one_global_draw(shard: Path) -> None:
    single = next(_stream(shard))[0].view(4, 16)
    ranks = [next(_stream(shard, rows_per_rank=2, rank=r, world_size=2))[0].view(2, 16) for r in (0, 1)]
    assert torch.equal(torch.cat(ranks), single)


def test_resume_from_state_reads_the_same_rows(shard: Path) -> None:
    uninterrupted = _stream(shard)
    expected = [next(uninterrupted)[0] for _ in range(30)]  # crosses into the second epoch
    first = _stream(shard)
    for _ in range(17):
        next(first)
    resumed = _stream(shard)
    resumed.load_state_dict(first.state_dict())
    for index in range(17, 30):
        assert torch.equal(next(resumed)[0], expected[index]), f"draw {index} differs after resume"


def test_a_tiny_or_a_huge_split_is_refused(shard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = tmp_path / "tiny.bin"
    write_shard(tiny, list(range(10)))
    with pytest.raises(DataError, match="fewer than one row"):
        _stream(tiny)
    monkeypatch.setattr(windows, "MAX_SHUFFLED_TOKENS", 999)
    with pytest.raises(DataError, match="holds the training tokens in memory") as caught:
        _stream(shard)
    assert "sequential" in caught.value.hint
