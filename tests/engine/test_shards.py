"""`.bin` shards: the on-disk format, its validation errors, and the resumable rank-sliced stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    ShardStream,
    _load_data_shard,
    count_tokens,
    distributed_data_generator,
    read_shard_header,
    resolve_shard_files,
    write_shard,
    write_token_splits,
)
from engine.errors import DataError


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 50256, 65535, 7], dtype=np.int64)
    path = tmp_path / "a.bin"
    write_shard(path, tokens)
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [SHARD_MAGIC, 1, 5], "header must be magic, version, token count"
    assert path.stat().st_size == HEADER_BYTES + 2 * 5
    loaded = _load_data_shard(path)
    assert loaded.dtype == torch.uint16
    assert loaded.to(torch.int64).tolist() == tokens.tolist()
    write_shard(tmp_path / "b.bin", torch.tensor([3, 4]))
    write_shard(tmp_path / "c.bin", [5])
    assert count_tokens([path, tmp_path / "b.bin", tmp_path / "c.bin"]) == 8


def test_token_ids_beyond_uint16_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with pytest.raises(DataError, match="vocabulary larger than uint16") as err:
        write_shard(path, [1, 65536])
    assert "big.bin" in str(err.value)
    assert not path.exists(), "a refused shard must not leave a file behind"


def test_wrong_magic_is_rejected_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "foreign.bin"
    header = np.zeros(256, dtype="<i4")
    header[:3] = [12345, 1, 2]
    path.write_bytes(header.tobytes() + np.array([1, 2], dtype="<u2").tobytes())
    with pytest.raises(DataError, match="wrong magic number.*not a modded-nanogpt .bin shard") as err:
        _load_data_shard(path)
    assert "foreign.bin" in str(err.value)


def test_truncated_and_tiny_files_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    write_shard(path, list(range(100)))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"cut\.bin.*size mismatch.*100 tokens") as err:
        _load_data_shard(path)
    assert str(HEADER_BYTES + 190) in str(err.value), "the message should say how many bytes were found"
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match=r"tiny\.bin.*shorter than"):
        read_shard_header(tiny)


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        _load_data_shard(tmp_path / "gone.bin")
    assert "gone.bin" in str(err.value)
    pattern = str(tmp_path / "fineweb_train_*.bin")
    with pytest.raises(DataError, match="no shard files match") as err:
        next(distributed_data_generator(pattern, 8, 0, 1))
    assert pattern in str(err.value) and err.value.hint, "the error should name the pattern and give a hint"
    with pytest.raises(DataError, match="gone.bin"):
        resolve_shard_files([tmp_path / "gone.bin"])


def test_write_token_splits_names_and_sizes(tmp_path: Path) -> None:
    paths = write_token_splits(np.arange(25), tmp_path, "train", shard_size=10)
    assert [p.name for p in paths] == ["train_000000.bin", "train_000001.bin", "train_000002.bin"]
    assert [read_shard_header(p) for p in paths] == [10, 10, 5]
    assert resolve_shard_files(str(tmp_path / "train_*.bin")) == paths, "glob order must be shard order"


def _two_shards(tmp_path: Path) -> list[Path]:
    # token value = its global index, so slices are easy to check
    return write_token_splits(np.arange(100), tmp_path, "seq", shard_size=50)


def test_two_ranks_get_disjoint_contiguous_slices(tmp_path: Path) -> None:
    files = _two_shards(tmp_path)
    rank0 = distributed_data_generator(files, 16, rank=0, world_size=2)
    rank1 = distributed_data_generator(files, 16, rank=1, world_size=2)
    for step in range(2):
        (x0, y0), (x1, y1) = next(rank0), next(rank1)
        assert x0.dtype == torch.int32 and y0.dtype == torch.int64 and x0.shape == (8,)
        start = 16 * step
        assert x0.tolist() == list(range(start, start + 8))
        assert x1.tolist() == list(range(start + 8, start + 16)), "rank 1 must continue where rank 0 ends"
        for x, y in ((x0, y0), (x1, y1)):
            assert y.tolist() == [t + 1 for t in x.tolist()], "targets are the inputs shifted by one"


def test_shards_advance_then_cycle_or_stop(tmp_path: Path) -> None:
    files = _two_shards(tmp_path)
    # a 50-token shard holds batches of 16 (+1 target token) at offsets 0, 16 and 32
    starts = [int(x[0]) for x, _ in distributed_data_generator(files, 16, 0, 1, cycle=False)]
    assert starts == [0, 16, 32, 50, 66, 82]
    stream = ShardStream(files, 16, 0, 1, cycle=True)
    cycled = [int(next(stream)[0][0]) for _ in range(8)]
    assert cycled == [0, 16, 32, 50, 66, 82, 0, 16], "after the last shard the stream starts over"


def test_a_batch_ending_on_the_last_token_is_skipped_like_the_original(tmp_path: Path) -> None:
    # 49 tokens: the batch at 32 would need tokens 32..48, exactly the rest; the original moves on instead
    files = write_token_splits(np.arange(49), tmp_path, "edge", shard_size=49)
    assert [int(x[0]) for x, _ in ShardStream(files, 16, 0, 1, cycle=False)] == [0, 16]


def test_too_small_shards_raise_instead_of_looping(tmp_path: Path) -> None:
    files = write_token_splits(np.arange(20), tmp_path, "small", shard_size=10)
    with pytest.raises(DataError, match="needed for one batch"):
        next(ShardStream(files, 16, 0, 1, cycle=True))


def test_resume_from_position_yields_the_same_next_batch(tmp_path: Path) -> None:
    files = _two_shards(tmp_path)
    stream = ShardStream(files, 16, 1, 2)
    for _ in range(2):
        next(stream)
    state = stream.state_dict()
    assert stream.position == (0, 32)
    expected = [next(stream) for _ in range(3)]

    resumed = distributed_data_generator(files, 16, 1, 2, start_position=(state["file_index"], state["position"]))
    fresh = ShardStream(files, 16, 1, 2)
    fresh.load_state_dict(state)
    for want_x, want_y in expected:
        for got_x, got_y in (next(resumed), next(fresh)):
            assert torch.equal(got_x, want_x) and torch.equal(got_y, want_y), "resume must continue the sequence"
    with pytest.raises(DataError, match="does not fit"):
        ShardStream(files, 16, 0, 1, start_position=(5, 0))


def test_exhausted_stream_keeps_a_position_that_stays_exhausted(tmp_path: Path) -> None:
    files = _two_shards(tmp_path)
    stream = ShardStream(files, 16, 0, 1, cycle=False)
    assert len(list(stream)) == 6
    assert list(ShardStream(files, 16, 0, 1, cycle=False, start_position=stream.position)) == []
