"""A short text sample from a model in training (for metrics.jsonl and the dashboard)."""

from __future__ import annotations

import torch


@torch.inference_mode()
def sample_text(model: torch.nn.Module, tokenizer, prompt: str, *, max_new_tokens: int, temperature: float = 0.8,
                top_k: int = 50, seed: int = 0, device: torch.device | str = "cpu") -> str:
    """Sample max_new_tokens after BOS + prompt; stops early at a document separator."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = [tokenizer.bos_id] + tokenizer.encode(prompt)
    was_training = model.training
    model.eval()
    new_ids: list[int] = []
    max_len = getattr(model, "max_context", 1024)
    for _ in range(max_new_tokens):
        context = torch.tensor(ids[-max_len:], dtype=torch.int64, device=device)[None]  # (1, T)
        logits = model(context)[0, -1, : tokenizer.vocab_size].float().cpu()  # (V,)
        if temperature <= 0:
            next_id = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits[logits < kth] = -float("inf")
            next_id = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        if next_id == tokenizer.bos_id:
            break
        ids.append(next_id)
        new_ids.append(next_id)
    model.train(was_training)
    return prompt + tokenizer.decode(new_ids)
