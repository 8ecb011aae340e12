"""The CPU norms with hand-written backward passes equal the plain path, output and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.model import Rotary
from engine.model.norms import apply_rotary, fused_qk_norm_rotary, fused_rms_norm
from tests.helpers import assert_close_to_float64


def test_output_and_gradients_equal_autograd_on_a_strided_qkv_view() -> None:
    gen = torch.Generator().manual_seed(0)
    B, T, H, hd = 3, 20, 2, 16
    cos, sin = Rotary(hd, 64)(5, T)  # positions 5..24, so the angles are not all zero
    qkv = torch.randn(B, T, 3 * H * hd, generator=gen) * 3
    upstream = torch.randn(B, T, 2 * H, hd, generator=gen)
    results = []
    for fused, dtype in ((False, torch.float64), (True, torch.float32)):
        leaf = qkv.to(dtype).clone().requires_grad_()
        heads = leaf.view(B, T, 3 * H, hd)
        if fused:
            out = fused_qk_norm_rotary(heads[:, :, :2 * H], cos, sin)  # queries and keys together
        else:  # autograd's plain maths in float64, q and k apart, as the reference
            q, k, _ = heads.chunk(3, dim=-2)
            c, s = cos.double(), sin.double()
            out = torch.cat([apply_rotary(F.rms_norm(q, (hd,)), c, s), apply_rotary(F.rms_norm(k, (hd,)), c, s)], dim=2)
        (out * upstream.to(dtype)).sum().backward()
        results.append((out.detach(), leaf.grad))
    (plain_out, plain_grad), (fused_out, fused_grad) = results
    assert_close_to_float64(fused_out, plain_out, "output")
    assert_close_to_float64(fused_grad, plain_grad, "gradient")
    assert fused_grad[..., 2 * H * hd:].abs().max() == 0, "the values got a gradient they do not influence"


def test_rows_come_out_with_unit_rms() -> None:
    cos, sin = Rotary(8, 16)(0, 4)
    x = torch.randn(2, 4, 3, 8, requires_grad=True) * 10
    out = fused_qk_norm_rotary(x, cos, sin)
    # rotation keeps lengths, so every row keeps the RMS of 1 the norm gave it
    torch.testing.assert_close(out.square().mean(-1), torch.ones(2, 4, 3), rtol=1e-4, atol=1e-4)


def test_rms_norm_equals_autograd_and_leaves_the_upstream_gradient_alone() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 7, 32, generator=gen) * 5
    upstream = torch.randn(4, 7, 32, generator=gen)
    kept = upstream.clone()
    leaf = x.clone().requires_grad_()
    out = fused_rms_norm(leaf)
    out.backward(upstream)
    reference = x.double().requires_grad_()
    expected = F.rms_norm(reference, (32,))
    expected.backward(upstream.double())
    assert_close_to_float64(out.detach(), expected.detach(), "output")
    assert_close_to_float64(leaf.grad, reference.grad, "gradient")
    assert torch.equal(upstream, kept), "the backward wrote into the gradient it was given"
