"""The chunked CPU head + soft cap + cross-entropy equals the plain logits path, loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.model import LOGIT_SOFTCAP
from engine.model.softcap_loss import CHUNK_ROWS, fused_softcapped_cross_entropy
from tests.helpers import assert_close_to_float64

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
    for fused, dtype in ((False, torch.float64), (True, torch.float32)):  # the reference in float64
        h, w = hidden.to(dtype).clone().requires_grad_(), weight.to(dtype).clone().requires_grad_()
        if fused:
            loss = fused_softcapped_cross_entropy(h, w, targets, scale=SCALE, cap=LOGIT_SOFTCAP,
                                                  reduction=reduction, loss_mask=mask)
        else:
            loss = _reference(h, w, targets, reduction, mask)
        (2.5 * loss).backward()  # a non-unit upstream gradient must scale both gradients
        results.append((loss.detach(), h.grad, w.grad))
    (ref_loss, ref_h, ref_w), (loss, grad_h, grad_w) = results
    for name, got, expected in (("loss", loss, ref_loss), ("hidden", grad_h, ref_h), ("weight", grad_w, ref_w)):
        assert_close_to_float64(got, expected, name)
