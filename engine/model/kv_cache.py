"""Key/value cache for incremental decoding with `GPT.forward_cached`, rolling past the attention window."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine.config import ModelConfig


@dataclass
class CacheSlot:
    """One attention layer's view of the cache for one forward_cached call."""

    keys: Tensor  # (B, max_len, H, head_dim)
    values: Tensor  # (B, max_len, H, head_dim)
    pos: int  # absolute position of the first new token
    start: int  # first cached position the new queries can see (earlier keys are outside every window)
    offset: int = 0  # absolute position held at buffer index 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, T_new, H, head_dim) at pos and return the visible keys and values (B, S, H, head_dim)."""
        begin, end = self.pos - self.offset, self.pos - self.offset + k.size(1)
        self.keys[:, begin:end] = k
        self.values[:, begin:end] = v
        return self.keys[:, self.start - self.offset:end], self.values[:, self.start - self.offset:end]


@dataclass
class KVCache:
    """Keys and values of the positions decoded so far that attention can still see.

    keys[i] and values[i] are (B, max_len, H, head_dim) for layer i, or None for a layer without
    attention; keys are stored QK-normed and rotated at their absolute position, values already
    mixed with the value embedding. docs (B, max_len) holds the document id of each position so the
    document mask can be applied to the prefix. Buffer index j holds absolute position offset + j;
    positions [offset, pos) are valid.

    With `window_blocks` set (the longest window any layer uses, in blocks of `block_size`), the
    cache rolls: when new tokens would not fit, the positions no new query can see are dropped and
    the rest moves to the front, so a sequence of any length needs only window + chunk positions.
    Without it the cache holds max_len positions and refuses more.
    """

    keys: list[Tensor | None]
    values: list[Tensor | None]
    docs: Tensor
    pos: int = 0
    offset: int = 0
    window_blocks: int | None = None
    block_size: int = 1

    @classmethod
    def allocate(cls, config: ModelConfig, batch_size: int, max_len: int,
                 device: torch.device | str, dtype: torch.dtype, window_blocks: int | None = None) -> KVCache:
        """Empty cache for `batch_size` sequences of up to `max_len` held positions; dtype = the model's activations.

        window_blocks (the longest attention window in blocks) makes it roll; max_len must then
        exceed the window by at least the longest chunk fed at once.
        """
        shape = (batch_size, max_len, config.num_heads, config.head_dim)
        keys: list[Tensor | None] = []
        values: list[Tensor | None] = []
        for layer in range(config.num_layers):
            has_attention = layer not in config.no_attention_layers
            keys.append(torch.zeros(shape, device=device, dtype=dtype) if has_attention else None)
            values.append(torch.zeros(shape, device=device, dtype=dtype) if has_attention else None)
        docs = torch.zeros(batch_size, max_len, device=device, dtype=torch.long)
        if window_blocks is not None:
            assert max_len > window_blocks * config.attn_block_size, "a rolling cache must exceed its window"
        return cls(keys=keys, values=values, docs=docs, window_blocks=window_blocks, block_size=config.attn_block_size)

    @property
    def batch_size(self) -> int:
        return self.docs.size(0)

    @property
    def max_len(self) -> int:
        return self.docs.size(1)

    def _first_needed(self, pos: int) -> int:
        """The first position a query at `pos` (or later) may see; the one before pos is always kept for its document id."""
        assert self.window_blocks is not None
        return max(0, min((pos // self.block_size - self.window_blocks + 1) * self.block_size, pos - 1))

    def can_resume_at(self, length: int) -> bool:
        """Whether decoding can continue after the first `length` positions (all it needs is still held)."""
        if length == 0 or self.offset == 0:
            return length <= self.pos
        return length <= self.pos and self.window_blocks is not None and self._first_needed(length) >= self.offset

    def _make_room(self, new: int) -> None:
        if self.pos - self.offset + new <= self.max_len or self.window_blocks is None:
            return
        keep_from = max(self.offset, self._first_needed(self.pos))
        begin, end = keep_from - self.offset, self.pos - self.offset
        for buffer in [*self.keys, *self.values, self.docs]:
            if buffer is not None:
                buffer[:, :end - begin] = buffer[:, begin:end].clone()  # the slices may overlap
        self.offset = keep_from

    def append_docs(self, tokens: Tensor, bos_id: int) -> Tensor:
        """Record the document ids of new tokens (B, T_new) at pos and return them (B, T_new).

        Ids continue from the last cached position, so they equal a cumulative BOS count over the
        whole sequence, exactly as the uncached forward computes them. A rolling cache first drops
        the positions that fell out of every window.
        """
        self._make_room(tokens.size(1))
        begin, end = self.pos - self.offset, self.pos - self.offset + tokens.size(1)
        assert end <= self.max_len, f"KV cache holds {self.max_len} positions, {end} needed: crop, chunk or reallocate"
        previous = self.docs[:, begin - 1] if self.pos > 0 else self.docs.new_zeros(self.batch_size)
        new_docs = previous[:, None] + (tokens == bos_id).cumsum(dim=-1)  # (B, T_new)
        self.docs[:, begin:end] = new_docs
        return new_docs

    def held_docs(self, start: int, end: int) -> Tensor:
        """Document ids (B, end - start) of absolute positions [start, end), which must be held."""
        assert self.offset <= start <= end, f"positions from {start} are no longer held (from {self.offset})"
        return self.docs[:, start - self.offset:end - self.offset]

    def slot(self, layer: int, start: int) -> CacheSlot:
        """The cache view of attention layer `layer`, for keys from position `start` on."""
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None and values is not None, f"layer {layer} has no attention, so no cache"
        assert start >= self.offset, f"layer {layer} needs position {start}, dropped (cache starts at {self.offset})"
        return CacheSlot(keys=keys, values=values, pos=self.pos, start=start, offset=self.offset)

    def crop(self, length: int) -> None:
        """Keep only the first `length` positions (e.g. to regenerate a reply from an earlier point)."""
        assert 0 <= length <= self.pos, f"cannot crop a cache of {self.pos} positions to {length}"
        assert self.can_resume_at(length), f"positions before {length} were rolled out of the cache; reset it"
        if length == 0:
            self.offset = 0
        self.pos = length

    def reset(self) -> None:
        """Forget every position; the buffers stay allocated for the next sequence."""
        self.pos = 0
        self.offset = 0
