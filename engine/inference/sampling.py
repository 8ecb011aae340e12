"""Token sampling maths: repetition penalty, temperature, top-k and top-p, then a greedy or seeded draw.

Scores that cannot be sampled (NaN, +inf, or a row with nothing left) raise an EngineError instead of
being drawn from: CheckpointError when the model's own scores are broken, ConfigError when the settings
broke them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.errors import CheckpointError, ConfigError
from engine.sampling_params import SamplingParams


def filter_logits(logits: Tensor, params: SamplingParams, context: Tensor | None = None) -> Tensor:
    """Scaled and filtered logits (B, V); -inf marks tokens that cannot be sampled. temperature must be > 0."""
    logits = logits.float().clone()
    if params.repetition_penalty != 1.0 and context is not None:
        seen = logits.gather(1, context)  # (B, T): the logits of tokens already in each row's context
        penalised = torch.where(seen > 0, seen / params.repetition_penalty, seen * params.repetition_penalty)
        logits.scatter_(1, context, penalised)
    if params.temperature == 0:
        return logits
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.size(-1):
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p; the first token always stays
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= params.top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, -float("inf"))
    return logits


def sample_next(logits: Tensor, params: SamplingParams, generator: torch.Generator,
                context: Tensor | None = None) -> Tensor:
    """Next token ids (B,) from logits (B, V); greedy at temperature 0, else seeded multinomial."""
    return draw(checked_scores(logits, params, context), params, generator)


def checked_scores(logits: Tensor, params: SamplingParams, context: Tensor | None = None) -> Tensor:
    """filter_logits' scores (B, V), or CheckpointError/ConfigError when they cannot be sampled."""
    filtered = filter_logits(logits, params, context)
    # both checks in one device-to-host copy: a GPU is synchronised once per token, not three times
    raw_bad, filtered_bad = torch.stack([_unsamplable(logits), _unsamplable(filtered)]).tolist()
    if raw_bad:
        raise CheckpointError("the model's scores for the next token are not finite numbers (NaN or infinity)",
                              hint="its weights are probably NaN; use an earlier checkpoint, or evaluate it first")
    if filtered_bad:
        raise ConfigError("the sampling settings turn the model's scores into NaN or infinity",
                          hint="use a gentler temperature or repetition penalty (1 = none)")
    return filtered


def draw(filtered: Tensor, params: SamplingParams, generator: torch.Generator) -> Tensor:
    """Token ids (B,) from checked scores (B, V): the argmax at temperature 0, else a seeded multinomial draw."""
    if params.temperature == 0:
        return filtered.argmax(dim=-1)
    probs = torch.softmax(filtered, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _unsamplable(scores: Tensor) -> Tensor:
    """-inf marks a masked token; NaN, +inf or a row with nothing left (NaN weights, an overflow) cannot be sampled."""
    return torch.isnan(scores).any() | torch.isposinf(scores).any() | (~torch.isfinite(scores).any(dim=-1)).any()
