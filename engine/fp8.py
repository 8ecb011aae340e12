"""FP8 matmul for the lm_head, as in the modded-nanogpt records: e4m3 forward, e5m2 gradients.

Inputs and weights are divided by fixed scales and cast to float8_e4m3fn; the output gradient is
divided by its scale and cast to float8_e5m2 (more range, less precision). `torch._scaled_mm`
multiplies the scales back. Fixed scales need no amax bookkeeping: the head's input is RMS-normed,
so |x| <= sqrt(D) and x / (sqrt(D)/448) fits e4m3's largest value, 448.

The ops are `torch.library` custom ops, opaque to torch.compile; on CUDA their bodies are compiled
on their own so the scale-and-cast passes are fused. On CPU they run eagerly (tests only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

E4M3_MAX = 448.0
# the records' weight and gradient scales for the 768-dim head; the input scale follows the width
WEIGHT_SCALE = 24 / E4M3_MAX
GRAD_SCALE = 1 / E4M3_MAX


def head_scales(model_dim: int) -> tuple[float, float, float]:
    """(x_s, w_s, grad_s) for a head whose input is the RMS-normed (…, model_dim) hidden state."""
    return model_dim**0.5 / E4M3_MAX, WEIGHT_SCALE, GRAD_SCALE


def _forward_impl(x: Tensor, w: Tensor, x_s: float, w_s: float) -> tuple[Tensor, Tensor, Tensor]:
    x_f8 = x.div(x_s).to(torch.float8_e4m3fn)  # (N, K)
    w_f8 = w.div(w_s).to(torch.float8_e4m3fn)  # (M, K)
    out = torch._scaled_mm(
        x_f8, w_f8.T,  # (N, K) @ (K, M); the second operand must be column-major
        out_dtype=torch.bfloat16,
        scale_a=x.new_tensor(x_s, dtype=torch.float32),
        scale_b=x.new_tensor(w_s, dtype=torch.float32),
        use_fast_accum=True,
    )  # (N, M)
    return out, x_f8, w_f8


def _backward_impl(grad: Tensor, x_f8: Tensor, w_f8: Tensor, x_s: float, w_s: float,
                   grad_s: float) -> tuple[Tensor, Tensor]:
    grad_f8 = grad.div(grad_s).to(torch.float8_e5m2)  # (N, M)
    scale_x = grad.new_tensor(x_s, dtype=torch.float32)
    scale_w = grad.new_tensor(w_s, dtype=torch.float32)
    scale_grad = grad.new_tensor(grad_s, dtype=torch.float32)
    grad_x = torch._scaled_mm(
        grad_f8, w_f8.T.contiguous().T,  # (N, M) @ (M, K) column-major
        out_dtype=torch.bfloat16, scale_a=scale_grad, scale_b=scale_w, use_fast_accum=False,
    )  # (N, K)
    # x^T @ grad and then transposed: faster than grad^T @ x for the tall (vocab, dim) head
    grad_w = torch._scaled_mm(
        x_f8.T.contiguous(), grad_f8.T.contiguous().T,  # (K, N) @ (N, M) column-major
        out_dtype=torch.float32, scale_a=scale_x, scale_b=scale_grad, use_fast_accum=False,
    ).T  # (M, K), fp32 like the master weight
    return grad_x, grad_w


@functools.cache
def _compiled(impl: Callable[..., tuple[Tensor, ...]]) -> Callable[..., tuple[Tensor, ...]]:
    return torch.compile(impl)


def _run(impl: Callable[..., tuple[Tensor, ...]], first: Tensor, *args: object) -> tuple[Tensor, ...]:
    # fused on CUDA; eager elsewhere, where compiling would cost more than the tests it serves
    return (_compiled(impl) if first.is_cuda else impl)(first, *args)


@torch.library.custom_op("nanogpt_tui::fp8_mm", mutates_args=())
def fp8_mm(x: Tensor, w: Tensor, x_s: float, w_s: float, grad_s: float) -> tuple[Tensor, Tensor, Tensor]:
    """x (N, K) @ w (M, K)^T in FP8 -> (bf16 output (N, M), x in e4m3, w in e4m3) for the backward."""
    assert x.ndim == w.ndim == 2 and x.size(1) == w.size(1), f"bad fp8_mm shapes {tuple(x.shape)} @ {tuple(w.shape)}^T"
    assert x.is_contiguous() and w.is_contiguous(), "fp8_mm needs contiguous operands"
    out, x_f8, w_f8 = _run(_forward_impl, x, w, x_s, w_s)
    return out, x_f8, w_f8


@fp8_mm.register_fake
def _(x: Tensor, w: Tensor, x_s: float, w_s: float, grad_s: float) -> tuple[Tensor, Tensor, Tensor]:
    out = x.new_empty((x.size(0), w.size(0)), dtype=torch.bfloat16)
    return out, torch.empty_like(x, dtype=torch.float8_e4m3fn), torch.empty_like(w, dtype=torch.float8_e4m3fn)


@torch.library.custom_op("nanogpt_tui::fp8_mm_backward", mutates_args=())
def fp8_mm_backward(grad: Tensor, x_f8: Tensor, w_f8: Tensor, x_s: float, w_s: float,
                    grad_s: float) -> tuple[Tensor, Tensor]:
    """Gradients (bf16 for x (N, K), fp32 for w (M, K)) of fp8_mm from the output gradient (N, M)."""
    grad_x, grad_w = _run(_backward_impl, grad.contiguous(), x_f8, w_f8, x_s, w_s, grad_s)
    return grad_x, grad_w


@fp8_mm_backward.register_fake
def _(grad: Tensor, x_f8: Tensor, w_f8: Tensor, x_s: float, w_s: float, grad_s: float) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x_f8, dtype=torch.bfloat16), torch.empty_like(w_f8, dtype=torch.float32)


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    *_, x_s, w_s, grad_s = inputs
    _, x_f8, w_f8 = output
    ctx.save_for_backward(x_f8, w_f8)
    ctx.scales = x_s, w_s, grad_s
    ctx.set_materialize_grads(False)


def _backward(ctx: Any, grad_out: Tensor, *_: Tensor) -> tuple:
    x_f8, w_f8 = ctx.saved_tensors
    grad_x, grad_w = torch.ops.nanogpt_tui.fp8_mm_backward(grad_out, x_f8, w_f8, *ctx.scales)
    return grad_x, grad_w, None, None, None


fp8_mm.register_autograd(_backward, setup_context=_setup_context)


def fp8_linear(x: Tensor, weight: Tensor) -> Tensor:
    """x (..., D) @ weight (V, D)^T through fp8_mm with the head's scales; returns bf16 (..., V)."""
    assert x.dtype == torch.bfloat16, f"the FP8 head expects bf16 activations, got {x.dtype}"
    x_s, w_s, grad_s = head_scales(x.size(-1))
    flat = x.flatten(0, -2).contiguous()  # (N, D)
    out = torch.ops.nanogpt_tui.fp8_mm(flat, weight.contiguous(), x_s, w_s, grad_s)[0]  # (N, V)
    return out.view(*x.shape[:-1], -1)  # (..., V)
