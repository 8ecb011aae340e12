"""The modded-nanogpt GPT (the original's speedrun architecture), parameterised by `ModelConfig`.

For the original configuration (`ModelConfig()`) the state_dict keys and shapes equal the original's
model.py, so its checkpoints load after stripping the `_orig_mod.` prefix that torch.compile adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import ModelConfig, next_multiple_of_n
from engine.model.attention import AttentionMask, Window, attend, build_mask, dense_mask, document_ids, resolve_backend
from engine.model.fp8 import fp8_linear
from engine.model.kv_cache import CacheSlot, KVCache
from engine.model.norms import apply_rotary, norm, qk_norm_rotary
from engine.model.relu2_mlp import relu2_mlp
from engine.model.softcap_loss import cross_entropy_of_logits, softcap, softcapped_cross_entropy

# rotary tables cover this many positions up front and grow when a longer sequence arrives
DEFAULT_MAX_SEQ_LEN = 4096
# fixed attention logit scale instead of head_dim**-0.5, as in the original (QK-norm bounds q.k anyway)
ATTENTION_SCALE = 0.12
LOGIT_SOFTCAP = 30.0


def _uniform_init_(weight: Tensor, fan_in: int) -> None:
    # the original's init: uniform with std 0.5 / sqrt(fan_in), i.e. bound sqrt(3) * std
    bound = 3**0.5 * 0.5 * fan_in**-0.5
    with torch.no_grad():
        weight.uniform_(-bound, bound)


class CastedLinear(nn.Linear):
    """Bias-free linear layer whose weight is cast to the input's dtype, so fp32 weights serve bf16 activations."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def reset_parameters(self) -> None:
        _uniform_init_(self.weight, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.type_as(x))


class Rotary(nn.Module):
    """Half-truncated rotary tables: head_dim/4 frequencies from 1 down to 1/1024, then head_dim/4 zeros."""

    cos: Tensor
    sin: Tensor

    def __init__(self, head_dim: int, max_seq_len: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        # non-persistent: derived from the shape, so checkpoints stay equal to the original's
        self.register_buffer("cos", torch.empty(0, head_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(0, head_dim // 2), persistent=False)
        self.build(max_seq_len)

    def build(self, length: int) -> None:
        """(Re)compute the fp32 tables for positions 0..length-1 on the tables' current device."""
        device = self.cos.device
        # tables first built while generating must still be usable by a later training step
        with torch.inference_mode(False):
            freq = (1 / 1024) ** torch.linspace(0, 1, steps=self.head_dim // 4, dtype=torch.float32, device=device)
            freq = torch.cat([freq, freq.new_zeros(self.head_dim // 4)])  # (head_dim/2,)
            positions = torch.arange(length, dtype=torch.float32, device=device)
            theta = torch.outer(positions, freq)  # (length, head_dim/2)
            self.cos = theta.cos()
            self.sin = theta.sin()

    def forward(self, start: int, length: int) -> tuple[Tensor, Tensor]:
        """cos and sin (1, length, 1, head_dim/4) of the non-zero frequencies at positions start..start+length-1.

        The zero-frequency half of the table is left out: its angle is 0 at every position, so it
        would only multiply by 1 and add 0 (apply_rotary passes those dimensions through).
        """
        end = start + length
        # grow for a longer sequence; rebuild if a cast such as model.bfloat16() reached the tables
        if end > self.cos.size(0) or self.cos.dtype != torch.float32:
            self.build(max(end, 2 * self.cos.size(0)))
        rotated = self.head_dim // 4
        return self.cos[None, start:end, None, :rotated], self.sin[None, start:end, None, :rotated]


class CausalSelfAttention(nn.Module):
    """Multi-head attention with merged QKV weights, QK-norm, rotary and value embeddings."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        inner_dim = config.num_heads * config.head_dim
        self.qkv_w = nn.Parameter(torch.empty(3, inner_dim, config.model_dim))
        # mix of this layer's values and the token value embedding
        self.lambdas = nn.Parameter(torch.empty(2))
        self.c_proj = CastedLinear(inner_dim, config.model_dim)

    def forward(self, x: Tensor, ve: Tensor | None, rotary: tuple[Tensor, Tensor], mask: AttentionMask,
                cache: CacheSlot | None = None) -> Tensor:
        """x (B, T, D) -> (B, T, D); with `cache`, new keys/values are stored and the cached prefix is attended."""
        B, T = x.size(0), x.size(1)
        qkv = F.linear(x, self.qkv_w.flatten(end_dim=1).type_as(x))  # (B, T, 3 * H * head_dim)
        heads = qkv.view(B, T, 3 * self.num_heads, self.head_dim)
        cos, sin = rotary
        # queries and keys side by side through one QK-norm + rotation (engine/model/norms.py)
        qk = qk_norm_rotary(heads[:, :, :2 * self.num_heads], cos, sin)  # (B, T, 2H, head_dim)
        q, k = qk.split(self.num_heads, dim=2)  # 2 x (B, T, H, head_dim)
        v = heads[:, :, 2 * self.num_heads:]  # (B, T, H, head_dim)
        if ve is not None:
            v = self.lambdas[0] * v + self.lambdas[1] * ve.view_as(v)  # ve (B, T, H * head_dim) -> (B, T, H, head_dim)
        else:
            v = self.lambdas[0] * v
        if cache is not None:
            k, v = cache.append(k, v)  # 2 x (B, S, H, head_dim): the visible prefix plus the new positions
        y = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, ATTENTION_SCALE)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # heads side by side
        return self.c_proj(y)


class MLP(nn.Module):
    """Two-layer MLP with a 4x hidden width and ReLU² activation."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.c_fc = CastedLinear(dim, 4 * dim)
        self.c_proj = CastedLinear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return relu2_mlp(x, self.c_fc.weight, self.c_proj.weight)  # (B, T, D)


class Block(nn.Module):
    """Residual block: mix in x0, then attention (unless the layer has none), then the MLP."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(config) if layer not in config.no_attention_layers else None
        self.mlp = MLP(config.model_dim)
        self.lambdas = nn.Parameter(torch.empty(2))

    def forward(self, x: Tensor, x0: Tensor, ve: Tensor | None, rotary: tuple[Tensor, Tensor],
                mask: AttentionMask | None, cache: CacheSlot | None = None) -> Tensor:
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        if self.attn is not None:
            assert mask is not None, "an attention layer was called without a mask"
            x = x + self.attn(norm(x), ve, rotary, mask, cache)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    """The modded-nanogpt GPT: value embeddings, U-net skips, long/short sliding windows, soft-capped logits."""

    def __init__(self, config: ModelConfig, max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
                 attention_backend: str = "auto") -> None:
        super().__init__()
        self.config = config
        # "auto" | "sdpa" | "flex"; resolved on each forward against the input's device
        self.attention_backend = attention_backend
        # FP8 lm_head matmul while training (engine.train.device turns it on for sm89+ GPUs); bf16/fp32 otherwise
        self.use_fp8_head = False
        # tokens: no layer attends farther back than this (the length the model was trained on), so
        # generation and evaluation past it stay within the distances seen in training; None = no cap
        self.attention_limit: int | None = None
        inner_dim = config.num_heads * config.head_dim
        self.embed = nn.Embedding(config.vocab_size, config.model_dim)
        self.value_embeds = nn.ModuleList(
            [nn.Embedding(config.vocab_size, inner_dim) for _ in range(config.num_value_embeds)]
        )
        self.blocks = nn.ModuleList([Block(config, layer) for layer in range(config.num_layers)])
        # the vocabulary is padded to a multiple of 128 for efficient matmuls; padded logits are never targets
        self.lm_head = CastedLinear(config.model_dim, config.padded_vocab_size)
        self.skip_weights = nn.Parameter(torch.empty(config.num_layers // 2))
        self.rotary = Rotary(config.head_dim, max_seq_len)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise every parameter as the original does; also usable after `to_empty` from the meta device."""
        for embedding in [self.embed, *self.value_embeds]:
            embedding.weight.normal_()  # nn.Embedding's default N(0, 1), which the original keeps
        for block in self.blocks:
            block.lambdas.copy_(block.lambdas.new_tensor([1.0, 0.0]))
            if block.attn is not None:
                _uniform_init_(block.attn.qkv_w, self.config.model_dim)
                block.attn.lambdas.copy_(block.attn.lambdas.new_tensor([0.5, 0.5]))
                # zero output projections make every block start as the identity
                block.attn.c_proj.weight.zero_()
            block.mlp.c_fc.reset_parameters()
            block.mlp.c_proj.weight.zero_()
        self.lm_head.weight.zero_()
        self.skip_weights.fill_(1.0)
        self.rotary.build(self.rotary.cos.size(0))

    def num_params(self) -> int:
        """Number of parameters, embeddings included."""
        return sum(p.numel() for p in self.parameters())

    def max_window_blocks(self) -> int:
        """The long window at the end of training: max_window_tokens rounded up to whole blocks."""
        block_size = self.config.attn_block_size
        return next_multiple_of_n(self.config.max_window_tokens, n=block_size) // block_size

    def attention_windows(self, sliding_window_num_blocks: int | None = None) -> dict[str, int]:
        """Window in blocks of each window letter the attention layers use, with the attention limit applied."""
        windows = self._windows(sliding_window_num_blocks)
        return {letter: int(windows[letter]) for letter in self._attention_window_letters()}

    def forward(self, input_seq: Tensor, target_seq: Tensor | None = None,
                sliding_window_num_blocks: int | Tensor | None = None, reduction: str = "mean",
                loss_mask: Tensor | None = None) -> Tensor:
        """Logits (B, T, padded_vocab) without targets, else the cross-entropy loss (a 0-d tensor).

        input_seq is (B, T) of independent sequences, or (T,) as in the original (logits are then (1, T, V)).
        sliding_window_num_blocks is the long window in blocks (None = max_window_blocks()).
        loss_mask (bool, shaped like target_seq) restricts the loss to its True positions:
        "mean" averages over them, "sum" adds them up.
        """
        tokens = input_seq[None] if input_seq.ndim == 1 else input_seq  # (B, T)
        assert tokens.ndim == 2, f"input_seq must be (T,) or (B, T), got shape {tuple(input_seq.shape)}"
        backend = resolve_backend(self.attention_backend, tokens.device)
        docs = document_ids(tokens, self.config.bos_id)  # (B, T)
        windows = self._windows(sliding_window_num_blocks)
        # one mask per window size, shared by all layers using it
        masks = {
            letter: build_mask(backend, docs, windows[letter], self.config.attn_block_size)
            for letter in self._attention_window_letters()
        }
        hidden = self._hidden(tokens, self.rotary(0, tokens.size(1)), masks, None)
        if target_seq is None:
            return self._logits(hidden)
        if self._fp8_head(hidden):
            return cross_entropy_of_logits(self._logits(hidden), target_seq, reduction, loss_mask)
        # head + soft cap + loss in one call: CPU fp32 training takes its chunked kernel there
        return softcapped_cross_entropy(hidden, self.lm_head.weight, target_seq, scale=self._logit_scale(hidden),
                                        cap=LOGIT_SOFTCAP, reduction=reduction, loss_mask=loss_mask)

    @staticmethod
    def _logit_scale(hidden: Tensor) -> float:
        # _logits divides the head's output by 7.5 * sqrt(model_dim) before the soft cap, as the original does
        return 1.0 / (7.5 * hidden.size(-1) ** 0.5)

    @torch.inference_mode()
    def forward_cached(self, input_seq: Tensor, cache: KVCache,
                       sliding_window_num_blocks: int | None = None) -> Tensor:
        """Logits (B, T_new, padded_vocab) for new tokens (B, T_new) following the cache's positions.

        Appends the new keys/values to `cache` and advances it; the masking rule is the same as in
        forward on absolute positions, so the logits equal those of one full forward pass.
        """
        tokens = input_seq[None] if input_seq.ndim == 1 else input_seq  # (B, T_new)
        assert tokens.size(0) == cache.batch_size, f"cache holds {cache.batch_size} rows, got {tokens.size(0)}"
        start_pos, end_pos = cache.pos, cache.pos + tokens.size(1)
        block_size = self.config.attn_block_size
        new_docs = cache.append_docs(tokens, self.config.bos_id)  # (B, T_new)
        q_pos = torch.arange(start_pos, end_pos, device=tokens.device)
        windows = self._windows(sliding_window_num_blocks)
        masks: dict[str, AttentionMask] = {}
        key_starts: dict[str, int] = {}
        for letter in self._attention_window_letters():
            window = int(windows[letter])
            assert window >= 1, f"a window of {window} blocks would hide every key, even the query's own"
            # every new query sits in block >= start_pos // block_size, so keys in blocks before
            # (that block - window + 1) are outside all their windows and need not be read
            key_start = max(0, (start_pos // block_size - window + 1) * block_size)
            k_pos = torch.arange(key_start, end_pos, device=tokens.device)
            masks[letter] = dense_mask(q_pos, k_pos, new_docs, cache.held_docs(key_start, end_pos), window, block_size)
            key_starts[letter] = key_start
        slots = [
            cache.slot(layer, key_starts[self.config.window_pattern[layer]]) if block.attn is not None else None
            for layer, block in enumerate(self.blocks)
        ]
        hidden = self._hidden(tokens, self.rotary(start_pos, tokens.size(1)), masks, slots)
        cache.pos = end_pos
        return self._logits(hidden)

    def _attention_window_letters(self) -> set[str]:
        return {self.config.window_pattern[layer] for layer, block in enumerate(self.blocks) if block.attn is not None}

    def _windows(self, sliding_window_num_blocks: int | Tensor | None) -> dict[str, Window]:
        long: Window = self.max_window_blocks() if sliding_window_num_blocks is None else sliding_window_num_blocks
        short = torch.clamp_min(long // 2, 1) if isinstance(long, Tensor) else max(long // 2, 1)
        if self.attention_limit is None:
            return {"L": long, "S": short}
        # each window is capped on its own: a short layer keeps its trained window when the long one is cut
        cap = max(1, self.attention_limit // self.config.attn_block_size)
        if isinstance(long, Tensor):
            return {"L": torch.clamp_max(long, cap), "S": torch.clamp_max(short, cap)}
        return {"L": min(long, cap), "S": min(short, cap)}

    def _layer_value_embeds(self, tokens: Tensor) -> list[Tensor | None]:
        # "012 ... 012": the first k layers and the last k layers share the k value embeddings
        num_ve, num_layers = len(self.value_embeds), len(self.blocks)
        ves = [value_embed(tokens) for value_embed in self.value_embeds]  # k x (B, T, H * head_dim)
        first_tail_layer = num_layers - num_ve
        return [
            ves[layer] if layer < num_ve else ves[layer - first_tail_layer] if layer >= first_tail_layer else None
            for layer in range(num_layers)
        ]

    def _hidden(self, tokens: Tensor, rotary: tuple[Tensor, Tensor], masks: dict[str, AttentionMask],
                slots: list[CacheSlot | None] | None) -> Tensor:
        """Final normalised hidden states (B, T, D) of the U-net stack of blocks."""
        x = x0 = norm(self.embed(tokens))  # (B, T, D)
        ves = self._layer_value_embeds(tokens)
        skip_connections: list[Tensor] = []
        half = len(self.skip_weights)
        for layer, block in enumerate(self.blocks):
            # the second half of the layers adds the first half's outputs in reverse order
            if layer >= half:
                x = x + self.skip_weights[layer - half] * skip_connections.pop()
            mask = masks[self.config.window_pattern[layer]] if block.attn is not None else None
            x = block(x, x0, ves[layer], rotary, mask, slots[layer] if slots is not None else None)
            if layer < half:
                skip_connections.append(x)
        return norm(x)

    def _fp8_head(self, hidden: Tensor) -> bool:
        # FP8 lm_head matmul while training in bf16 (engine.train.device turns it on for sm89+ GPUs)
        return self.use_fp8_head and self.training and hidden.dtype == torch.bfloat16

    def _logits(self, hidden: Tensor) -> Tensor:
        head = fp8_linear(hidden, self.lm_head.weight) if self._fp8_head(hidden) else self.lm_head(hidden)
        # (B, T, padded_vocab) soft-capped into (0, 30), in fp32
        return softcap(head, scale=self._logit_scale(hidden), cap=LOGIT_SOFTCAP)


def create_model(config: ModelConfig | None = None, max_seq_len: int = DEFAULT_MAX_SEQ_LEN) -> GPT:
    """A freshly initialised GPT; without a config, the original's 12-layer, 6-head, 768-dim speedrun model."""
    return GPT(config if config is not None else ModelConfig(), max_seq_len=max_seq_len)
