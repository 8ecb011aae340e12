"""A short text sample from a model in training (for metrics.jsonl and the dashboard)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch

if TYPE_CHECKING:
    from engine.model import GPT

MAX_SAMPLE_CONTEXT = 4096


@torch.inference_mode()
def sample_text(model: torch.nn.Module, tokenizer, prompt: str, *, max_new_tokens: int, temperature: float = 0.8,
                top_k: int = 50, seed: int = 0, device: torch.device | str = "cpu") -> str:
    """Sample max_new_tokens after BOS + prompt with the KV-cached Generator; stops early at a document separator."""
    from engine.inference.generate import Generator, SamplingParams

    was_training = model.training
    model.eval()
    try:
        dtype = next(model.parameters()).dtype
        # the conversation size a chat would keep; generation itself runs to any length
        context = min(len(prompt) + max_new_tokens + 2, MAX_SAMPLE_CONTEXT)
        # the trainer's GPT (or a wrapper forwarding its attributes, as torch.compile's does)
        gpt = cast("GPT", model)
        generator = Generator(gpt, tokenizer, device=torch.device(device), dtype=dtype, max_context=context)
        params = SamplingParams(temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens, seed=seed)
        return prompt + generator.complete(prompt, params)
    finally:
        model.train(was_training)
