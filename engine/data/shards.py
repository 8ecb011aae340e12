"""modded-nanogpt `.bin` token shards: write, validate, load, and stream them to ranks resumably.

A shard is a 256-int32 little-endian header (magic 20240520, version 1, token count) followed by
the tokens as uint16, byte for byte the format of the FineWeb shards modded-nanogpt trains on.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from engine.atomic import atomic_write
from engine.errors import DataError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_BYTES = 2  # uint16
MAX_VOCAB = 1 << 16
_MAX_TOKENS = (1 << 31) - 1  # the count is an int32 in the header

TokenArray = np.ndarray | Sequence[int] | Tensor


def write_shard(path: Path, tokens: TokenArray) -> None:
    """Write `tokens` as one shard, atomically; ids must fit uint16."""
    path = Path(path)
    if isinstance(tokens, Tensor):
        tokens = tokens.detach().cpu().numpy()
    ids = np.asarray(tokens)
    if ids.ndim != 1:
        raise DataError(f"{path}: tokens must be a flat sequence, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{path}: tokens must be integers, got {ids.dtype}")
    if ids.size > _MAX_TOKENS:
        raise DataError(f"{path}: {ids.size} tokens do not fit one shard (max {_MAX_TOKENS})",
                        hint="split the tokens over several shards (write_token_splits)")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= MAX_VOCAB):
        bad = int(ids.max()) if int(ids.max()) >= MAX_VOCAB else int(ids.min())
        raise DataError(
            f"{path}: token id {bad} does not fit a shard: vocabulary larger than uint16",
            hint=f"shards store ids below {MAX_VOCAB}; use a smaller tokenizer vocabulary",
        )
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, ids.size
    body = np.ascontiguousarray(ids, dtype="<u2")

    def write(handle: BinaryIO) -> None:
        handle.write(header.tobytes())
        handle.write(memoryview(body).cast("B"))

    atomic_write(path, write)


def read_shard_header(path: Path) -> int:
    """Validate a shard's header and size; return its token count."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"shard {path} does not exist", hint="check the data file paths") from None
    if size < HEADER_BYTES:
        raise DataError(f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte shard header: "
                        "not a modded-nanogpt .bin shard")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if int(header[0]) != SHARD_MAGIC:
        raise DataError(
            f"{path}: wrong magic number {int(header[0])} (expected {SHARD_MAGIC}): not a modded-nanogpt .bin shard",
            hint="shards are written by engine.data.shards.write_shard or modded-nanogpt's fineweb.py",
        )
    if int(header[1]) != SHARD_VERSION:
        raise DataError(f"{path}: unsupported shard version {int(header[1])} (expected {SHARD_VERSION})")
    num_tokens = int(header[2])
    expected = HEADER_BYTES + TOKEN_BYTES * num_tokens
    if num_tokens < 0 or size != expected:
        raise DataError(
            f"{path}: size mismatch: the header promises {num_tokens} tokens ({expected} bytes), "
            f"found {size} bytes; the shard is truncated or corrupt",
            hint="download or write the shard again",
        )
    return num_tokens


def _load_data_shard(path: Path, pin_memory: bool = False) -> Tensor:
    """All tokens of a validated shard as a uint16 tensor, shape (num_tokens,)."""
    path = Path(path)
    num_tokens = read_shard_header(path)
    # pinned host memory lets the per-batch H2D copies run asynchronously on CUDA
    tokens = torch.empty(num_tokens, dtype=torch.uint16, pin_memory=pin_memory)
    with path.open("rb", buffering=0) as handle:
        handle.seek(HEADER_BYTES)
        # read straight into the tensor's memory (little-endian host assumed, as in the original)
        nbytes = handle.readinto(tokens.numpy())
    if nbytes != TOKEN_BYTES * num_tokens:
        raise DataError(f"{path}: read {nbytes} bytes of tokens, expected {TOKEN_BYTES * num_tokens}",
                        hint="the file changed while it was read")
    return tokens


def count_tokens(files: Sequence[Path]) -> int:
    """Total tokens in the given shards (reads headers only)."""
    return sum(read_shard_header(Path(path)) for path in files)


def write_token_splits(tokens: TokenArray, out_dir: Path, prefix: str, shard_size: int) -> list[Path]:
    """Write `tokens` as `<out_dir>/<prefix>_000000.bin`, `_000001.bin`, … of at most shard_size tokens."""
    assert shard_size > 0, f"shard_size must be positive, got {shard_size}"
    if isinstance(tokens, Tensor):
        tokens = tokens.detach().cpu().numpy()
    ids = np.asarray(tokens)
    paths = []
    for index, start in enumerate(range(0, max(len(ids), 1), shard_size)):
        path = Path(out_dir) / f"{prefix}_{index:06d}.bin"
        write_shard(path, ids[start : start + shard_size])
        paths.append(path)
    return paths


def resolve_shard_files(filename_pattern: str | Sequence[Path]) -> list[Path]:
    """Sorted files matching a glob, or the given list; DataError when nothing (or a listed file) is missing."""
    if isinstance(filename_pattern, str):
        files = [Path(name) for name in sorted(glob.glob(str(Path(filename_pattern).expanduser())))]
        if not files:
            raise DataError(
                f"no shard files match {filename_pattern!r}",
                hint="check data.train_files / data.val_files, or download the FineWeb shards first",
            )
        return files
    files = [Path(path) for path in filename_pattern]
    if not files:
        raise DataError("no shard files given", hint="pass at least one .bin shard")
    for path in files:
        if not path.is_file():
            raise DataError(f"shard {path} does not exist", hint="check the data file paths")
    return files


class ShardStream:
    """Iterator of (inputs int32, targets int64) batches, each shape (batch_size // world_size,).

    Every step consumes batch_size contiguous tokens of the current shard; rank r takes the r-th
    slice plus one token for the targets. `position` (file index, token offset) of the next batch
    goes into checkpoints so a resumed run reads exactly the batches it would have read.
    """

    def __init__(
        self,
        files: Sequence[Path],
        batch_size: int,
        rank: int,
        world_size: int,
        *,
        cycle: bool = True,
        device: str | torch.device = "cpu",
        start_position: tuple[int, int] | None = None,
    ) -> None:
        assert files, "ShardStream needs at least one shard"
        assert 0 <= rank < world_size, f"rank {rank} outside world_size {world_size}"
        if batch_size % world_size:
            raise DataError(f"batch of {batch_size} tokens does not split evenly over {world_size} ranks")
        self.files = [Path(path) for path in files]
        self.batch_size = batch_size
        self.local_batch_size = batch_size // world_size
        self.rank = rank
        self.cycle = cycle
        self.device = torch.device(device)
        self._non_blocking = self.device.type == "cuda"
        self._file_index, self._pos = start_position if start_position is not None else (0, 0)
        if not 0 <= self._file_index < len(self.files) or self._pos < 0:
            raise DataError(f"data position {start_position} does not fit {len(self.files)} shard(s)",
                            hint="resume with the same data files the checkpoint was trained on")
        self._tokens: Tensor | None = None  # the current shard, loaded lazily

    @property
    def position(self) -> tuple[int, int]:
        """(file index, token offset) where the next batch starts."""
        return self._file_index, self._pos

    def state_dict(self) -> dict[str, int]:
        return {"file_index": self._file_index, "position": self._pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        file_index, pos = int(state["file_index"]), int(state["position"])
        if not 0 <= file_index < len(self.files) or pos < 0:
            raise DataError(f"data position {(file_index, pos)} does not fit {len(self.files)} shard(s)",
                            hint="resume with the same data files the checkpoint was trained on")
        if file_index != self._file_index:
            self._tokens = None
        self._file_index, self._pos = file_index, pos

    def __iter__(self) -> ShardStream:
        return self

    def _fits(self) -> bool:
        assert self._tokens is not None
        # the original's strict `<` (it skips a batch that would end exactly at the shard's last token);
        # kept so the batch order equals modded-nanogpt's
        return self._pos + self.batch_size + 1 < len(self._tokens)

    def _advance_file(self) -> None:
        last = self._file_index + 1 == len(self.files)
        if last and not self.cycle:
            # the position stays at the end of the last shard, so resuming from it also stops
            raise StopIteration
        self._file_index = 0 if last else self._file_index + 1
        self._tokens, self._pos = None, 0

    def __next__(self) -> tuple[Tensor, Tensor]:
        skipped = 0
        while True:
            if self._tokens is None:
                self._tokens = _load_data_shard(self.files[self._file_index], pin_memory=self._non_blocking)
            if self._fits():
                break
            skipped += 1
            if skipped > len(self.files):
                raise DataError(
                    f"no shard holds more than {self.batch_size + 1} tokens, needed for one batch",
                    hint="use a smaller batch (train.batch_size × train_seq_len) or bigger shards",
                )
            self._advance_file()
        start = self._pos + self.rank * self.local_batch_size
        window = self._tokens[start : start + self.local_batch_size + 1]  # (local_batch_size + 1,)
        inputs = window[:-1].to(device=self.device, dtype=torch.int32, non_blocking=self._non_blocking)
        targets = window[1:].to(device=self.device, dtype=torch.int64, non_blocking=self._non_blocking)
        self._pos += self.batch_size
        return inputs, targets


def distributed_data_generator(
    filename_pattern: str | Sequence[Path],
    batch_size: int,
    rank: int,
    world_size: int,
    *,
    cycle: bool = True,
    device: str | torch.device = "cpu",
    start_position: tuple[int, int] | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """The original's loader as a generator; use ShardStream directly when the position is needed."""
    files = resolve_shard_files(filename_pattern)
    yield from ShardStream(files, batch_size, rank, world_size, cycle=cycle, device=device,
                           start_position=start_position)
