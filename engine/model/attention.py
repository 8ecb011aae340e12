"""Attention with one masking rule and two backends: SDPA (CPU, cached decoding) and FlexAttention (CUDA).

The rule: query q may see key k iff k <= q, both lie in the same document (documents start at a
BOS token) and (q // block_size) - (k // block_size) < window_blocks. Positions are absolute, so
the same rule serves a whole sequence and a query chunk decoded against a KV cache.

FlexAttention's BlockMask is built from block-level facts (first and last document of each
128-token tile), O((T/128)^2) per mask, instead of evaluating the rule on all T^2 pairs: tiles
where the rule holds for every pair are "full", tiles where it may hold for some are "partial"
and get the rule itself as mask_mod; tests/engine/test_block_mask.py checks the result against
the rule pair by pair.
"""

from __future__ import annotations

import functools
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, flex_attention

BACKENDS = ("auto", "sdpa", "flex")
# FlexAttention's tile (torch's default sparse block size, which its CUDA kernels are tuned for)
FLEX_TILE = 128

# a dense boolean mask (B, 1, Tq, Tk) for SDPA, or a BlockMask for FlexAttention
AttentionMask = Union[Tensor, BlockMask]
# a window in blocks: a Python int, or a 0-d tensor so a compiled model does not recompile as it grows
Window = Union[int, Tensor]


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend to use on `device`: "auto" means flex on CUDA (fused kernels) and sdpa elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        return "flex" if device.type == "cuda" else "sdpa"
    return backend


def document_ids(tokens: Tensor, bos_id: int) -> Tensor:
    """Document index of every token (same shape as `tokens`); each BOS token starts a new document."""
    return (tokens == bos_id).cumsum(dim=-1)


def may_attend(q_pos: Tensor, k_pos: Tensor, q_doc: Tensor, k_doc: Tensor,
               window_blocks: Window, block_size: int) -> Tensor:
    """The masking rule, elementwise with broadcasting; also the body of the FlexAttention mask_mod."""
    causal = k_pos <= q_pos
    same_document = q_doc == k_doc
    in_window = (q_pos // block_size - k_pos // block_size) < window_blocks
    return causal & same_document & in_window


def dense_mask(q_pos: Tensor, k_pos: Tensor, q_docs: Tensor, k_docs: Tensor,
               window_blocks: Window, block_size: int) -> Tensor:
    """Boolean SDPA mask (B, 1, Tq, Tk) for queries at q_pos (Tq,) and keys at k_pos (Tk,).

    q_docs (B, Tq) and k_docs (B, Tk) are the document ids at those positions; True = may attend.
    """
    allowed = may_attend(
        q_pos[None, :, None], k_pos[None, None, :],  # (1, Tq, 1), (1, 1, Tk)
        q_docs[:, :, None], k_docs[:, None, :],  # (B, Tq, 1), (B, 1, Tk)
        window_blocks, block_size,
    )  # (B, Tq, Tk)
    return allowed[:, None]  # (B, 1, Tq, Tk): one mask shared by all heads


def _ordered_blocks(selected: Tensor) -> tuple[Tensor, Tensor]:
    """Per query tile, the count of selected key tiles (B, 1, nq) and their indices first (B, 1, nq, nk), int32."""
    counts = selected.sum(dim=-1, dtype=torch.int32)
    # a stable descending sort puts the selected tiles first, in increasing order
    indices = selected.to(torch.int32).argsort(dim=-1, descending=True, stable=True).to(torch.int32)
    return counts, indices


def flex_block_mask(docs: Tensor, window_blocks: Window, block_size: int, tile: int = FLEX_TILE) -> BlockMask:
    """FlexAttention BlockMask for whole sequences with document ids `docs` (B, T), from tile-level facts.

    A tile pair is skipped when no (q, k) pair in it can pass one of the rule's three tests, full
    when every pair passes all three, and partial (checked by may_attend per pair) otherwise.
    """
    batch_size, seq_len = docs.shape
    num_tiles = -(-seq_len // tile)
    # pad to whole tiles with the last document id: padded positions lie past seq_len, which
    # FlexAttention never reads, and repeating the id widens no tile's document range
    padding = num_tiles * tile - seq_len
    padded = torch.cat([docs, docs[:, -1:].expand(batch_size, padding)], dim=1) if padding else docs  # (B, n * tile)
    tiles = padded.view(batch_size, num_tiles, tile)  # (B, n, tile)
    # document ids only grow along a sequence, so a tile's first and last ids bound all of its ids
    doc_first, doc_last = tiles[:, :, 0], tiles[:, :, -1]  # (B, n)
    q_first, q_last = doc_first[:, :, None], doc_last[:, :, None]  # (B, n, 1): query tiles on rows
    k_first, k_last = doc_first[:, None, :], doc_last[:, None, :]  # (B, 1, n): key tiles on columns
    tile_index = torch.arange(num_tiles, device=docs.device)
    q_tile, k_tile = tile_index[:, None], tile_index[None, :]  # (n, 1), (1, n)
    # window distance in attention blocks: smallest between a query tile's first position and the
    # key tile's last, largest between the query tile's last position and the key tile's first
    q_start, q_end = q_tile * tile, q_tile * tile + tile - 1
    k_start, k_end = k_tile * tile, k_tile * tile + tile - 1
    nearest = q_start // block_size - k_end // block_size  # (n, n)
    farthest = q_end // block_size - k_start // block_size  # (n, n)

    some_causal, all_causal = k_tile <= q_tile, k_tile < q_tile  # (n, n)
    some_same_document = (q_first <= k_last) & (k_first <= q_last)  # (B, n, n)
    all_same_document = (q_first == q_last) & (k_first == k_last) & (q_first == k_first)  # (B, n, n)
    some_in_window, all_in_window = nearest < window_blocks, farthest < window_blocks  # (n, n)

    full = all_causal & all_same_document & all_in_window  # (B, n, n)
    partial = some_causal & some_same_document & some_in_window & ~full  # (B, n, n)
    partial_counts, partial_indices = _ordered_blocks(partial[:, None])  # (B, 1, n), (B, 1, n, n)
    full_counts, full_indices = _ordered_blocks(full[:, None])

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return may_attend(q_idx, kv_idx, padded[b, q_idx], padded[b, kv_idx], window_blocks, block_size)

    return BlockMask.from_kv_blocks(partial_counts, partial_indices, full_counts, full_indices,
                                    BLOCK_SIZE=tile, mask_mod=mask_mod, seq_lengths=(seq_len, seq_len))


def build_mask(backend: str, docs: Tensor, window_blocks: Window, block_size: int) -> AttentionMask:
    """Mask for whole sequences (positions 0..T-1) with document ids `docs` (B, T), for `backend`."""
    if backend == "flex":
        return flex_block_mask(docs, window_blocks, block_size)
    positions = torch.arange(docs.size(1), device=docs.device)
    return dense_mask(positions, positions, docs, docs, window_blocks, block_size)


@functools.cache
def _compiled_flex_attention() -> Callable[..., Tensor]:
    # eager flex_attention materialises the full score matrix; the fused kernel needs torch.compile
    return torch.compile(flex_attention, dynamic=False)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, scale: float) -> Tensor:
    """Masked attention of q (B, H, Tq, hd) over k, v (B, H, Tk, hd); the mask's type picks the backend."""
    if isinstance(mask, BlockMask):
        kernel = _compiled_flex_attention() if q.is_cuda else flex_attention
        out = kernel(q, k, v, block_mask=mask, scale=scale)
        assert isinstance(out, Tensor), "flex_attention returned auxiliary outputs that were not requested"
        return out
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
