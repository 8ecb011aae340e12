"""Training rows in a fresh shuffled order every epoch (`data.sampling = "shuffled"`).

The original streams its shards front to back, which suits FineWeb: its documents are shuffled and a
step's 48Ki tokens span many of them. A small corpus such as the embedded Shakespeare is stored
play by play, so a step's contiguous 4,096 tokens come from one scene and consecutive steps from
the same play: the gradients are far less varied than the batch size suggests. Here the training
tokens are cut into rows of seq_len (+1 for the targets) on a grid that shifts by a random offset
each epoch, and the rows come in a random order, so every step mixes the whole corpus and every
epoch still reads each token once. (Rows at independent random offsets, as nanoGPT draws them,
scored worse in the CPU benchmark: 2.078 bpb against 2.038-2.043 shuffled and 2.052-2.060
sequential, because drawing with replacement leaves a fifth of the text unseen in 1.5 epochs.)

The order comes from the one epoch shuffler (`engine/data/epoch_order.py`): seeded by (seed,
epoch), walked by a cursor whose position (epoch, row) goes into checkpoints, so a resumed run
reads exactly the rows an uninterrupted one would; all ranks walk the same global order and each
takes its own share of every micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from engine.data.epoch_order import EpochCursor, epoch_generator
from engine.data.shards import _load_data_shard, count_tokens
from engine.errors import DataError

# shuffled rows hold the whole training split in memory as int32 (4 bytes a token): at most 1 GiB
MAX_SHUFFLED_TOKENS = 1 << 28


class ShuffledRowStream:
    """Iterator of (inputs, targets) flat tensors of rows_per_rank rows of seq_len tokens each."""

    def __init__(self, files: Sequence[Path], rows_per_rank: int, seq_len: int, *, rank: int, world_size: int,
                 seed: int) -> None:
        assert files, "ShuffledRowStream needs at least one shard"
        assert 0 <= rank < world_size, f"rank {rank} outside world_size {world_size}"
        self.files = [Path(path) for path in files]
        self.rows_per_rank, self.seq_len = rows_per_rank, seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.cursor = EpochCursor(self._epoch_starts)
        total = count_tokens(self.files)
        if total > MAX_SHUFFLED_TOKENS:
            raise DataError(f"data.sampling = 'shuffled' holds the training tokens in memory, and these shards "
                            f"have {total:,} (more than {MAX_SHUFFLED_TOKENS:,})",
                            hint="use data.sampling = 'sequential' for large shard sets such as FineWeb")
        if total < seq_len + 1:
            raise DataError(f"the training split has {total} tokens, fewer than one row of {seq_len + 1}",
                            hint="use a larger corpus or a shorter train.train_seq_len")
        self._tokens: Tensor | None = None  # every training token, loaded on the first draw

    def __iter__(self) -> ShuffledRowStream:
        return self

    def _epoch_starts(self, epoch: int) -> Tensor:
        """Start offsets of `epoch`'s rows in their shuffled order."""
        assert self._tokens is not None
        generator = epoch_generator(self.seed, epoch)
        # a fresh grid offset each epoch, so row boundaries fall elsewhere every pass
        offset = int(torch.randint(self.seq_len, (1,), generator=generator))
        num_rows = (len(self._tokens) - 1 - offset) // self.seq_len
        if num_rows < 1:  # a split shorter than two rows: start at 0, where one row fits
            offset, num_rows = 0, 1
        return offset + self.seq_len * torch.randperm(num_rows, generator=generator)

    def __next__(self) -> tuple[Tensor, Tensor]:
        if self._tokens is None:
            self._tokens = torch.cat([_load_data_shard(path) for path in self.files]).to(torch.int32)
        starts = self.cursor.take_share(self.rows_per_rank, self.rank, self.world_size)
        windows = self._tokens[starts[:, None] + torch.arange(self.seq_len + 1)]  # (rows_per_rank, seq_len + 1)
        return windows[:, :-1].reshape(-1), windows[:, 1:].reshape(-1).to(torch.int64)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "row": self.cursor.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cursor.epoch, self.cursor.position = int(state["epoch"]), int(state["row"])
