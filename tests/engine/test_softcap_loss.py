"""The chunked CPU head + soft cap + cross-entropy equals the plain logits path, loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.model import GPT, LOGIT_SOFTCAP
from engine.softcap_loss import CHUNK_ROWS, softcapped_cross_entropy

SCALE = 0.05


def _reference(hidden, weight, targets, reduction, mask):
    logits = LOGIT_SOFTCAP * torch.sigmoid(F.linear(hidden, weight) * SCALE)  # (N, V)
    losses = F.cross_entropy(logits, targets, reduction="none")
    if mask is not None:
        losses = torch.where(mask, losses, 0.0)
    if reduction == "sum":
        return losses.sum()
    count = mask.sum().clamp_min(1) if mask is not None else losses.numel()
    return losses.sum() / count


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("masked", ["none", "some", "all"])
def test_loss_and_gradients_equal_the_plain_path(reduction: str, masked: str) -> None:
    gen = torch.Generator().manual_seed(0)
    rows = CHUNK_ROWS + 45  # a full chunk and a partial one
    hidden = torch.randn(rows, 16, generator=gen)
    weight = torch.randn(200, 16, generator=gen) * 3
    targets = torch.randint(0, 200, (rows,), generator=gen)
    mask = {"none": None, "some": torch.rand(rows, generator=gen) > 0.3,
            "all": torch.zeros(rows, dtype=torch.bool)}[masked]
    results = []
    for fn in (_reference, None):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        if fn is None:
            loss = softcapped_cross_entropy(h, w, targets, scale=SCALE, cap=LOGIT_SOFTCAP,
                                            reduction=reduction, loss_mask=mask)
        else:
            loss = fn(h, w, targets, reduction, mask)
        (2.5 * loss).backward()  # a non-unit upstream gradient must scale both gradients
        results.append((loss.detach(), h.grad, w.grad))
    (ref_loss, ref_h, ref_w), (loss, grad_h, grad_w) = results
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_h, ref_h, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(grad_w, ref_w, rtol=1e-4, atol=2e-5)


def test_gpt_training_loss_uses_the_chunked_path_with_the_same_result() -> None:
    config = ModelConfig(vocab_size=300, num_layers=2, num_heads=2, head_dim=8, model_dim=16, num_value_embeds=1,
                         window_pattern="LS", max_window_tokens=32, attn_block_size=8, bos_id=0)
    torch.manual_seed(0)
    model = GPT(config, max_seq_len=32)
    with torch.no_grad():
        model.lm_head.weight.normal_(std=0.5)  # zero-initialised heads would hide a wrong gradient
    tokens = torch.randint(1, 300, (3, 33))
    chunked = model(tokens[:, :-1], tokens[:, 1:])
    chunked.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    hidden_logits = model(tokens[:, :-1])  # the plain path: logits, then the loss
    plain = F.cross_entropy(hidden_logits.view(-1, hidden_logits.size(-1)), tokens[:, 1:].reshape(-1))
    plain.backward()
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
