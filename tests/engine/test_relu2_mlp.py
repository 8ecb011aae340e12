"""The CPU ReLU² MLP with its hand-written backward equals autograd's, output and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.model.relu2_mlp import CHUNK_ROWS, fused_relu2_mlp
from tests.helpers import assert_close_to_float64


def test_output_and_gradients_equal_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, CHUNK_ROWS // 2 + 37, 16, generator=gen)  # a full chunk and a partial one
    w_fc = torch.randn(64, 16, generator=gen) * 0.3
    w_proj = torch.randn(16, 64, generator=gen) * 0.3
    upstream = torch.randn(3, CHUNK_ROWS // 2 + 37, 16, generator=gen)
    results = []
    for fused, dtype in ((False, torch.float64), (True, torch.float32)):
        # the reference is autograd's path in float64, so neither fp32 summation order is "the truth"
        leaves = [t.to(dtype).clone().requires_grad_() for t in (x, w_fc, w_proj)]
        a, b, c = leaves
        out = fused_relu2_mlp(a, b, c) if fused else F.linear(F.relu(F.linear(a, b)).square(), c)
        (out * upstream.to(dtype)).sum().backward()
        results.append([out.detach(), *(t.grad for t in leaves)])
    for name, expected, got in zip(["output", "x", "w_fc", "w_proj"], *results):
        assert got.dtype == torch.float32, name
        assert_close_to_float64(got, expected, name)
