"""Key/value cache for incremental decoding with `GPT.forward_cached`."""

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

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, T_new, H, head_dim) at pos and return the visible keys and values (B, S, H, head_dim)."""
        end = self.pos + k.size(1)
        self.keys[:, self.pos:end] = k
        self.values[:, self.pos:end] = v
        return self.keys[:, self.start:end], self.values[:, self.start:end]


@dataclass
class KVCache:
    """Keys and values of every position decoded so far, preallocated to `max_len` positions.

    keys[i] and values[i] are (B, max_len, H, head_dim) for layer i, or None for a layer without
    attention; keys are stored QK-normed and rotated at their absolute position, values already
    mixed with the value embedding. docs (B, max_len) holds the document id of each position so the
    document mask can be applied to the prefix. Only positions [0, pos) are valid.
    """

    keys: list[Tensor | None]
    values: list[Tensor | None]
    docs: Tensor
    pos: int = 0

    @classmethod
    def allocate(cls, config: ModelConfig, batch_size: int, max_len: int,
                 device: torch.device | str, dtype: torch.dtype) -> KVCache:
        """Empty cache for `batch_size` sequences of up to `max_len` tokens; dtype = the model's activations."""
        shape = (batch_size, max_len, config.num_heads, config.head_dim)
        keys: list[Tensor | None] = []
        values: list[Tensor | None] = []
        for layer in range(config.num_layers):
            has_attention = layer not in config.no_attention_layers
            keys.append(torch.zeros(shape, device=device, dtype=dtype) if has_attention else None)
            values.append(torch.zeros(shape, device=device, dtype=dtype) if has_attention else None)
        docs = torch.zeros(batch_size, max_len, device=device, dtype=torch.long)
        return cls(keys=keys, values=values, docs=docs)

    @property
    def batch_size(self) -> int:
        return self.docs.size(0)

    @property
    def max_len(self) -> int:
        return self.docs.size(1)

    def append_docs(self, tokens: Tensor, bos_id: int) -> Tensor:
        """Record the document ids of new tokens (B, T_new) at pos and return them (B, T_new).

        Ids continue from the last cached position, so they equal a cumulative BOS count over the
        whole sequence, exactly as the uncached forward computes them.
        """
        end = self.pos + tokens.size(1)
        assert end <= self.max_len, f"KV cache holds {self.max_len} positions, {end} needed: crop or reallocate it"
        previous = self.docs[:, self.pos - 1] if self.pos > 0 else self.docs.new_zeros(self.batch_size)
        new_docs = previous[:, None] + (tokens == bos_id).cumsum(dim=-1)  # (B, T_new)
        self.docs[:, self.pos:end] = new_docs
        return new_docs

    def slot(self, layer: int, start: int) -> CacheSlot:
        """The cache view of attention layer `layer`, for keys from position `start` on."""
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None and values is not None, f"layer {layer} has no attention, so no cache"
        return CacheSlot(keys=keys, values=values, pos=self.pos, start=start)

    def crop(self, length: int) -> None:
        """Keep only the first `length` positions (e.g. to regenerate a reply from an earlier point)."""
        assert 0 <= length <= self.pos, f"cannot crop a cache of {self.pos} positions to {length}"
        self.pos = length

    def reset(self) -> None:
        """Forget every position; the buffers stay allocated for the next sequence."""
        self.pos = 0
