"""The one epoch shuffler: each epoch covers every item once in a fresh order, ranks share one
global order, a resumed cursor continues exactly, and both training streams draw from it."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.data.epoch_order import EpochCursor, ShuffledRowIndices, epoch_generator
from engine.data.shards import write_shard
from engine.data.windows import ShuffledRowStream


def _rows(num_rows: int = 10, **kwargs: int) -> ShuffledRowIndices:
    args = {"rows_per_rank": 3, "rank": 0, "world_size": 1, "seed": 5} | kwargs
    return ShuffledRowIndices(num_rows, args.pop("rows_per_rank"), **args)


def test_each_epoch_covers_every_row_once_in_a_new_order() -> None:
    stream = _rows(num_rows=12)
    drawn = torch.cat([stream.next_rows() for _ in range(8)]).tolist()  # 24 rows: exactly two epochs
    first, second = drawn[:12], drawn[12:]
    assert sorted(first) == list(range(12)) and sorted(second) == list(range(12))
    assert first != second, "the second epoch is reshuffled"
    assert first != list(range(12)), "rows come shuffled"
    assert stream.state_dict() == {"epoch": 1, "position": 12}, "the cursor moves on only when it needs a row"


def test_a_micro_batch_may_span_two_epochs() -> None:
    cursor = EpochCursor(lambda epoch: torch.arange(4) + 100 * epoch)
    assert cursor.take(3).tolist() == [0, 1, 2]
    assert cursor.take(3).tolist() == [3, 100, 101], "the chunk continues into the next epoch's order"
    assert (cursor.epoch, cursor.position) == (1, 2)


def test_ranks_take_their_shares_of_one_global_order() -> None:
    single = _rows(rows_per_rank=4).next_rows()
    ranks = torch.cat([_rows(rows_per_rank=2, rank=r, world_size=2).next_rows() for r in (0, 1)])
    assert torch.equal(ranks, single)


def test_resume_continues_with_the_same_rows() -> None:
    uninterrupted = _rows()
    expected = [uninterrupted.next_rows() for _ in range(9)]  # crosses two epoch boundaries
    first = _rows()
    for _ in range(4):
        first.next_rows()
    resumed = _rows()
    resumed.load_state_dict(first.state_dict())
    for index in range(4, 9):
        assert torch.equal(resumed.next_rows(), expected[index]), f"draw {index} differs after resume"


def test_seeds_and_epochs_give_different_orders() -> None:
    orders = {tuple(torch.randperm(50, generator=epoch_generator(seed, epoch)).tolist())
              for seed in (0, 1, 2) for epoch in (0, 1, 2)}
    assert len(orders) == 9, "(seed, epoch) pairs must not collide, as seed + epoch would for (0, 1) and (1, 0)"


def test_both_training_streams_draw_from_the_same_generator(tmp_path: Path) -> None:
    """Fine-tuning rows and pretraining windows get their epoch order from epoch_generator(seed, epoch)."""
    rows = _rows(num_rows=10, rows_per_rank=10, seed=3).next_rows()
    assert rows.tolist() == torch.randperm(10, generator=epoch_generator(3, 0)).tolist()

    shard = tmp_path / "train_000000.bin"
    write_shard(shard, list(range(200)))
    inputs, _ = next(ShuffledRowStream([shard], 1, 16, rank=0, world_size=1, seed=3))
    generator = epoch_generator(3, 0)
    offset = int(torch.randint(16, (1,), generator=generator))
    first_start = offset + 16 * int(torch.randperm((200 - 1 - offset) // 16, generator=generator)[0])
    assert int(inputs[0]) == first_start
