"""FlexAttention block masks built from tile-level facts, checked pair by pair against the masking rule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

from engine.model.attention import FLEX_TILE, dense_mask, document_ids, flex_block_mask, may_attend

BOS = 0


def _expand(mask: BlockMask, docs: Tensor, window: int, block_size: int) -> Tensor:
    """The (B, T, T) boolean mask FlexAttention applies: full tiles True, partial tiles by mask_mod, others False."""
    batch_size, seq_len = docs.shape
    tile = mask.BLOCK_SIZE[0]
    num_tiles = -(-seq_len // tile)
    kind = torch.zeros(batch_size, num_tiles, num_tiles, dtype=torch.int8)  # 0 skip, 1 partial, 2 full
    for counts, indices, value in ((mask.kv_num_blocks, mask.kv_indices, 1),
                                   (mask.full_kv_num_blocks, mask.full_kv_indices, 2)):
        for b, q in itertools.product(range(batch_size), range(num_tiles)):
            for k in indices[b, 0, q, : counts[b, 0, q]].tolist():
                assert kind[b, q, k] == 0, f"tile ({q}, {k}) listed twice in the block mask"
                kind[b, q, k] = value
    per_pair = kind.repeat_interleave(tile, 1).repeat_interleave(tile, 2)[:, :seq_len, :seq_len]  # (B, T, T)
    positions = torch.arange(seq_len)
    b = torch.arange(batch_size)[:, None, None]
    by_mod = mask.mask_mod(b, torch.zeros_like(b), positions[None, :, None], positions[None, None, :])
    return (per_pair == 2) | ((per_pair == 1) & by_mod)


def _layouts(seq_len: int) -> list[list[int]]:
    """BOS positions: none, at tile edges, just off them, many short documents, one per tile..."""
    t = FLEX_TILE
    return [
        [0], [0, t], [0, t - 1], [0, t + 1], [0, 3 * t // 2], [0, 2 * t, 2 * t + 1],
        [0, 5, 9, t + 3, 2 * t - 1, 3 * t], list(range(0, seq_len, t)), list(range(0, seq_len, 37)),
        [0, seq_len - 1], [t // 2, 3 * t], [], list(range(0, seq_len, t // 2)),
    ] + [
        # random layouts: 1 to 12 documents anywhere
        sorted(torch.randperm(seq_len, generator=torch.Generator().manual_seed(seed))[: 1 + seed % 12].tolist())
        for seed in range(16)
    ]


def _docs(bos_positions: list[int], seq_len: int, vocab: int = 50, seed: int = 0) -> Tensor:
    tokens = torch.randint(1, vocab, (seq_len,), generator=torch.Generator().manual_seed(seed))
    tokens[bos_positions] = BOS
    return document_ids(tokens, BOS)


@pytest.mark.parametrize("seq_len,block_size", [(4 * FLEX_TILE, FLEX_TILE), (3 * FLEX_TILE + 40, FLEX_TILE),
                                                (3 * FLEX_TILE, 64), (2 * FLEX_TILE, 48)])
def test_block_masks_equal_the_rule_on_every_layout_and_window(seq_len: int, block_size: int) -> None:
    layouts = _layouts(seq_len)
    docs = torch.stack([_docs([p for p in layout if p < seq_len], seq_len, seed=i) for i, layout in enumerate(layouts)])
    positions = torch.arange(seq_len)
    cases = 0
    for window in range(1, -(-seq_len // block_size) + 2):
        expected = dense_mask(positions, positions, docs, docs, window, block_size)[:, 0]  # (B, T, T)
        mask = flex_block_mask(docs, window, block_size)
        got = _expand(mask, docs, window, block_size)
        wrong = (got != expected).nonzero()
        assert wrong.numel() == 0, (f"window {window}, block {block_size}: layout {layouts[int(wrong[0, 0])]} "
                                    f"differs at (q, k) = {wrong[0, 1:].tolist()}")
        # same tensor as a window argument (the compiled model's form)
        tensor_window = flex_block_mask(docs, torch.tensor(window, dtype=torch.int32), block_size)
        assert torch.equal(tensor_window.kv_num_blocks, mask.kv_num_blocks)
        assert torch.equal(tensor_window.full_kv_num_blocks, mask.full_kv_num_blocks)
        cases += len(layouts)
    assert cases >= 29 * 5


def test_tiles_are_as_sparse_as_create_block_mask_finds() -> None:
    # with 128-token attention blocks, the tile-level facts decide every tile exactly: torch's
    # pair-by-pair construction finds the same partial and full tiles (no wasted kernel work)
    seq_len = 6 * FLEX_TILE
    layouts = _layouts(seq_len)
    docs = torch.stack([_docs([p for p in layout if p < seq_len], seq_len, seed=i) for i, layout in enumerate(layouts)])
    for window in (1, 2, 3, 7):
        ours = flex_block_mask(docs, window, FLEX_TILE)

        def rule(b: Tensor, h: Tensor, q: Tensor, k: Tensor, window: int = window) -> Tensor:
            return may_attend(q, k, docs[b, q], docs[b, k], window, FLEX_TILE)

        reference = create_block_mask(rule, docs.size(0), None, seq_len, seq_len, device="cpu")
        for name in ("kv_num_blocks", "full_kv_num_blocks"):
            assert torch.equal(getattr(ours, name), getattr(reference, name)), f"{name} differs at window {window}"
        assert torch.equal(ours.to_dense(), reference.to_dense()), f"tile pattern differs at window {window}"
