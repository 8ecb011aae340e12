"""A nanogpt-tui (modded-nanogpt style) GPT for Hugging Face transformers; written by `nanogpt-tui export`.

The same maths as nanogpt-tui's engine/model/gpt.py at inference: RMS-normed embeddings, value
embeddings used "012 ... 012", QK-norm with half-truncated rotary, document-causal sliding-window
attention (long/short windows in blocks), ReLU² MLPs, U-net skips and soft-capped logits. Parameter
names equal the original's model.py, so model.safetensors holds exactly nanogpt-tui's state_dict.
Generation recomputes the whole sequence each step (no KV cache): simple and exact.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_nanogpt import NanoGPTConfig


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def rotate(x, cos, sin):
    """x (B, T, H, hd) rotated by cos, sin (B, T, 1, r): pairs (i, i + hd/2) for i < r; the rest have frequency 0."""
    half, r = x.size(-1) // 2, cos.size(-1)
    xf = x.float()
    x1, x2 = xf[..., :r], xf[..., half:half + r]
    y1 = x1 * cos + x2 * sin
    y2 = x2 * cos - x1 * sin
    return torch.cat((y1, xf[..., r:half], y2, xf[..., half + r:]), dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        inner = config.num_heads * config.head_dim
        self.qkv_w = nn.Parameter(torch.empty(3, inner, config.model_dim))
        self.lambdas = nn.Parameter(torch.empty(2))
        self.c_proj = nn.Linear(inner, config.model_dim, bias=False)
        self.scale = config.attention_scale

    def forward(self, x, ve, cos, sin, mask):
        B, T = x.size(0), x.size(1)
        qkv = F.linear(x, self.qkv_w.flatten(end_dim=1).type_as(x))  # (B, T, 3 * H * hd)
        q, k, v = qkv.view(B, T, 3 * self.num_heads, self.head_dim).chunk(3, dim=-2)  # 3 x (B, T, H, hd)
        q, k = rotate(norm(q), cos, sin), rotate(norm(k), cos, sin)
        v = self.lambdas[0] * v + (self.lambdas[1] * ve.view_as(v) if ve is not None else 0)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, scale=self.scale)  # (B, H, T, hd)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim, bias=False)
        self.c_proj = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        self.attn = CausalSelfAttention(config) if layer not in config.no_attention_layers else None
        self.mlp = MLP(config.model_dim)
        self.lambdas = nn.Parameter(torch.empty(2))

    def forward(self, x, x0, ve, cos, sin, mask):
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        if self.attn is not None:
            x = x + self.attn(norm(x), ve, cos, sin, mask)
        return x + self.mlp(norm(x))


class NanoGPTForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = NanoGPTConfig
    base_model_prefix = "nanogpt"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        inner = config.num_heads * config.head_dim
        self.embed = nn.Embedding(config.vocab_size, config.model_dim)
        self.value_embeds = nn.ModuleList(nn.Embedding(config.vocab_size, inner) for _ in range(config.num_value_embeds))
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.num_layers))
        self.lm_head = nn.Linear(config.model_dim, config.padded_vocab_size, bias=False)
        self.skip_weights = nn.Parameter(torch.empty(config.num_layers // 2))
        self.post_init()

    def _init_weights(self, module):
        # only reached for weights missing from the checkpoint; a fresh model starts as the original's does
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
        elif isinstance(module, Block):
            module.lambdas.data.copy_(torch.tensor([1.0, 0.0]))
        elif isinstance(module, CausalSelfAttention):
            nn.init.uniform_(module.qkv_w, -(3 ** 0.5) * 0.5 * module.qkv_w.size(-1) ** -0.5,
                             (3 ** 0.5) * 0.5 * module.qkv_w.size(-1) ** -0.5)
            module.lambdas.data.copy_(torch.tensor([0.5, 0.5]))
        elif module is self:
            nn.init.ones_(module.skip_weights)

    def get_input_embeddings(self):
        return self.embed

    def set_input_embeddings(self, value):
        self.embed = value

    def get_output_embeddings(self):
        return self.lm_head

    def _masks(self, tokens, positions, attention_mask):
        """Boolean SDPA masks (B, 1, T, T) per window letter: causal, same document, within the window."""
        config = self.config
        block = config.attn_block_size
        long_blocks = -(-config.max_window_tokens // block)
        windows = {"L": long_blocks, "S": max(long_blocks // 2, 1)}
        if config.attention_limit:  # each window capped on its own, as nanogpt-tui generates
            cap = max(1, config.attention_limit // block)
            windows = {letter: min(blocks, cap) for letter, blocks in windows.items()}
        docs = (tokens == config.bos_id).cumsum(dim=-1)  # (B, T)
        q_pos, k_pos = positions[:, :, None], positions[:, None, :]  # (B, T, 1), (B, 1, T)
        index = torch.arange(tokens.size(1), device=tokens.device)
        base = (index[None, None, :] <= index[None, :, None]) & (docs[:, :, None] == docs[:, None, :])
        if attention_mask is not None:
            base = base & attention_mask.bool()[:, None, :]
        # a padding query that may see nothing would give NaN; let it see itself (its output is unused)
        base = base | torch.eye(tokens.size(1), dtype=torch.bool, device=tokens.device)[None]
        return {letter: (base & ((q_pos // block - k_pos // block) < blocks))[:, None]
                for letter, blocks in windows.items()}

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        """Logits (B, T, output_vocab_size); with labels, also the next-token cross-entropy loss."""
        config = self.config
        tokens = input_ids
        if attention_mask is not None:
            # left padding (batched generation): positions count only the row's real tokens
            positions = (attention_mask.long().cumsum(dim=-1) - 1).clamp_min(0)
        else:
            positions = torch.arange(tokens.size(1), device=tokens.device)[None].expand(tokens.size(0), -1)
        masks = self._masks(tokens, positions, attention_mask)
        rotated = config.head_dim // 4
        freq = (1 / 1024) ** torch.linspace(0, 1, steps=rotated, dtype=torch.float32, device=tokens.device)
        theta = positions.float()[:, :, None] * freq  # (B, T, r)
        cos, sin = theta.cos()[:, :, None, :], theta.sin()[:, :, None, :]  # (B, T, 1, r)
        x = x0 = norm(self.embed(tokens).to(self.lm_head.weight.dtype))  # (B, T, D)
        ves = [embed(tokens).to(x.dtype) for embed in self.value_embeds]
        num_ve, num_layers = len(ves), len(self.blocks)
        skips, half = [], len(self.skip_weights)
        for layer, block in enumerate(self.blocks):
            ve = ves[layer] if layer < num_ve else ves[layer - (num_layers - num_ve)] \
                if layer >= num_layers - num_ve else None
            if layer >= half:
                x = x + self.skip_weights[layer - half] * skips.pop()
            x = block(x, x0, ve, cos, sin, masks[config.window_pattern[layer]])
            if layer < half:
                skips.append(x)
        logits = self.lm_head(norm(x)).float()
        logits = config.logit_softcap * torch.sigmoid(logits / (7.5 * x.size(-1) ** 0.5))
        logits = logits[..., :config.output_vocab_size]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # no KV cache: every step sees the whole sequence
        return {"input_ids": input_ids, "attention_mask": attention_mask}
