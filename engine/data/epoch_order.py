"""The one epoch shuffler: a fresh seeded order every epoch, walked by a resumable cursor.

Pretraining's shuffled windows (`engine/data/windows.py`) and fine-tuning's conversation rows
(`ShuffledRowIndices` below) both draw their orders from `epoch_generator`, so (seed, epoch) fixes
an epoch's order the same way everywhere, and both walk it with `EpochCursor`: all ranks follow
the same global order and each takes its own share of every micro-batch. The cursor's position
(epoch, index) goes into checkpoints, so a resumed run sees exactly the items an uninterrupted
one would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The RNG an epoch's order is drawn from; the run seed and the epoch mix so nearby seeds differ."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class EpochCursor:
    """Hands out items of per-epoch orders in sequence, moving to the next epoch when one runs out.

    `order_for_epoch(epoch)` returns that epoch's items as a 1-D tensor (it may differ in length
    from epoch to epoch); the newest one is cached.
    """

    def __init__(self, order_for_epoch: Callable[[int], Tensor]) -> None:
        self._order_for_epoch = order_for_epoch
        self.epoch, self.position = 0, 0  # the next item: its epoch and index in that epoch's order
        self._cached: tuple[int, Tensor] | None = None

    def _order(self) -> Tensor:
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._order_for_epoch(self.epoch))
        return self._cached[1]

    def take(self, count: int) -> Tensor:
        """The next `count` items (the chunk may span two or more epochs)."""
        chunk: list[Tensor] = []
        while count:
            order = self._order()
            if self.position == len(order):
                self.epoch, self.position = self.epoch + 1, 0
                continue
            taken = order[self.position:self.position + count]
            chunk.append(taken)
            self.position += len(taken)
            count -= len(taken)
        return torch.cat(chunk)

    def take_share(self, per_rank: int, rank: int, world_size: int) -> Tensor:
        """This rank's `per_rank` items of the next global chunk of `per_rank * world_size`."""
        return self.take(per_rank * world_size)[rank * per_rank:(rank + 1) * per_rank]


class ShuffledRowIndices:
    """Row indices 0..num_rows-1 in a fresh order each epoch; each call gives this rank its share."""

    def __init__(self, num_rows: int, rows_per_rank: int, *, rank: int, world_size: int, seed: int) -> None:
        assert num_rows > 0, "no rows to shuffle"
        assert 0 <= rank < world_size, f"rank {rank} outside world_size {world_size}"
        self.num_rows, self.rows_per_rank = num_rows, rows_per_rank
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.cursor = EpochCursor(lambda epoch: torch.randperm(num_rows, generator=epoch_generator(seed, epoch)))

    def next_rows(self) -> Tensor:
        """This rank's row indices for one micro-batch, shape (rows_per_rank,)."""
        return self.cursor.take_share(self.rows_per_rank, self.rank, self.world_size)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "position": self.cursor.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cursor.epoch, self.cursor.position = int(state["epoch"]), int(state["position"])
