"""Attention with one masking rule and two backends: SDPA (CPU, cached decoding) and FlexAttention (CUDA).

The rule: query q may see key k iff k <= q, both lie in the same document (documents start at a
BOS token) and (q // block_size) - (k // block_size) < window_blocks. Positions are absolute, so
the same rule serves a whole sequence and a query chunk decoded against a KV cache.
"""

from __future__ import annotations

import functools
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

BACKENDS = ("auto", "sdpa", "flex")

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


def flex_block_mask(docs: Tensor, window_blocks: Window, block_size: int) -> BlockMask:
    """FlexAttention BlockMask for whole sequences with document ids `docs` (B, T)."""
    batch_size, seq_len = docs.shape

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return may_attend(q_idx, kv_idx, docs[b, q_idx], docs[b, kv_idx], window_blocks, block_size)

    # uncompiled, create_block_mask materialises every (q, k) pair, far too much memory for the
    # 48Ki-token training sequences, so it is compiled on CUDA; on CPU it only serves tests
    return create_block_mask(mask_mod, batch_size, None, seq_len, seq_len, device=docs.device,
                             _compile=docs.device.type == "cuda")


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
