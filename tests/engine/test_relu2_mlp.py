"""The CPU ReLU² MLP with its hand-written backward equals autograd's, output and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.model import MLP
from engine.relu2_mlp import CHUNK_ROWS, relu2_mlp


def test_output_and_gradients_equal_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, CHUNK_ROWS // 2 + 37, 16, generator=gen)  # a full chunk and a partial one
    w_fc = torch.randn(64, 16, generator=gen) * 0.3
    w_proj = torch.randn(16, 64, generator=gen) * 0.3
    upstream = torch.randn(3, CHUNK_ROWS // 2 + 37, 16, generator=gen)
    results = []
    for fused in (False, True):
        leaves = [t.clone().requires_grad_() for t in (x, w_fc, w_proj)]
        a, b, c = leaves
        out = relu2_mlp(a, b, c) if fused else F.linear(F.relu(F.linear(a, b)).square(), c)
        (out * upstream).sum().backward()
        results.append([out.detach(), *(t.grad for t in leaves)])
    for name, expected, got in zip(["output", "x", "w_fc", "w_proj"], *results):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_mlp_module_uses_it_only_when_training_on_cpu() -> None:
    torch.manual_seed(0)
    mlp = MLP(ModelConfig(model_dim=16).model_dim)
    torch.nn.init.normal_(mlp.c_proj.weight, std=0.3)
    x = torch.randn(2, 5, 16, requires_grad=True)
    with torch.no_grad():
        plain = mlp(x)  # no gradients wanted: autograd's path
    torch.testing.assert_close(mlp(x), plain, rtol=1e-5, atol=1e-6)
