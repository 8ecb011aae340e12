"""FP8 matmul for the lm_head, as in the modded-nanogpt records: e4m3 forward, e5m2 gradients.

Inputs and weights are divided by fixed scales and cast to float8_e4m3fn; the output gradient is
divided by its scale and cast to float8_e5m2 (more range, less precision). `torch._scaled_mm`
multiplies the scales back. The forward scales are fixed: the head's input is RMS-normed, so
|x| <= sqrt(D) and x / (sqrt(D)/448) fits e4m3's largest value, 448.

The gradient scale is computed on the device from the gradient's largest magnitude (no host
sync): the original's fixed 1/448 was calibrated for a summed loss, while ours is a mean over
the micro-batch's tokens divided by the accumulation steps, 49,152-393,216x smaller, which a
fixed scale flushes to zero in e5m2 (tests/engine/test_fp8.py measures both).

The ops are `torch.library` custom ops, opaque to torch.compile; on CUDA their bodies are compiled
on their own so the scale-and-cast passes are fused. On CPU they run eagerly (tests only). The
e4m3 copies saved for the backward travel as uint8 views of the same bytes: the fake-tensor and
opcheck machinery compares and sums op outputs, which CPU float8 kernels cannot do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

E4M3_MAX = 448.0
E5M2_MAX = 57344.0
# the records' weight scale for the 768-dim head; the input scale follows the width
WEIGHT_SCALE = 24 / E4M3_MAX


def head_scales(model_dim: int) -> tuple[float, float]:
    """(x_s, w_s) for a head whose input is the RMS-normed (…, model_dim) hidden state."""
    return model_dim**0.5 / E4M3_MAX, WEIGHT_SCALE


def gradient_scale(grad: Tensor) -> Tensor:
    """0-d fp32 scale mapping grad's largest magnitude onto e5m2's largest value (computed on the device).

    A power of two, so dividing by it and multiplying it back are exact; an all-zero gradient gets 1.
    """
    amax = grad.abs().amax().float()
    exponent = torch.ceil(torch.log2(amax / E5M2_MAX))
    return torch.where(amax > 0, torch.exp2(exponent), torch.ones_like(amax))


def _scaled_mm(a: Tensor, b: Tensor, scale_a: Tensor, scale_b: Tensor, out_dtype: torch.dtype,
               use_fast_accum: bool) -> Tensor:
    """(a * scale_a) @ (b * scale_b) for fp8 a (N, K) row-major and b (K, M) column-major, as out_dtype."""
    if a.is_cuda:
        return torch._scaled_mm(a, b, out_dtype=out_dtype, scale_a=scale_a, scale_b=scale_b,
                                use_fast_accum=use_fast_accum)
    # CPU (tests only): the same product in fp32, where every fp8 value is exact; torch's CPU
    # _scaled_mm gives the same numbers ~1000x slower (tests/engine/test_fp8.py compares the two)
    return ((a.float() @ b.float()) * (scale_a * scale_b)).to(out_dtype)


def _forward_impl(x: Tensor, w: Tensor, x_s: float, w_s: float) -> tuple[Tensor, Tensor, Tensor]:
    x_f8 = x.div(x_s).to(torch.float8_e4m3fn)  # (N, K)
    w_f8 = w.div(w_s).to(torch.float8_e4m3fn)  # (M, K)
    out = _scaled_mm(
        x_f8, w_f8.T,  # (N, K) @ (K, M); the second operand must be column-major
        x.new_tensor(x_s, dtype=torch.float32), x.new_tensor(w_s, dtype=torch.float32),
        torch.bfloat16, use_fast_accum=True,
    )  # (N, M)
    return out, x_f8, w_f8


def _backward_impl(grad: Tensor, x_f8: Tensor, w_f8: Tensor, x_s: float, w_s: float) -> tuple[Tensor, Tensor]:
    scale_grad = gradient_scale(grad)  # 0-d fp32
    grad_f8 = grad.div(scale_grad).to(torch.float8_e5m2)  # (N, M)
    scale_x = grad.new_tensor(x_s, dtype=torch.float32)
    scale_w = grad.new_tensor(w_s, dtype=torch.float32)
    grad_x = _scaled_mm(
        grad_f8, w_f8.T.contiguous().T,  # (N, M) @ (M, K) column-major
        scale_grad, scale_w, torch.bfloat16, use_fast_accum=False,
    )  # (N, K)
    # x^T @ grad and then transposed: faster than grad^T @ x for the tall (vocab, dim) head
    grad_w = _scaled_mm(
        x_f8.T.contiguous(), grad_f8.T.contiguous().T,  # (K, N) @ (N, M) column-major
        scale_x, scale_grad, torch.float32, use_fast_accum=False,
    ).T  # (M, K) column-major (strides (1, M)), fp32 like the master weight
    return grad_x, grad_w


@functools.cache
def _compiled(impl: Callable[..., tuple[Tensor, ...]]) -> Callable[..., tuple[Tensor, ...]]:
    return torch.compile(impl)


def _run(impl: Callable[..., tuple[Tensor, ...]], first: Tensor, *args: object) -> tuple[Tensor, ...]:
    # fused on CUDA; eager elsewhere, where compiling would cost more than the tests it serves
    return (_compiled(impl) if first.is_cuda else impl)(first, *args)


@torch.library.custom_op("nanogpt_tui::fp8_mm", mutates_args=())
def fp8_mm(x: Tensor, w: Tensor, x_s: float, w_s: float) -> tuple[Tensor, Tensor, Tensor]:
    """x (N, K) @ w (M, K)^T in FP8 -> (bf16 output (N, M), the e4m3 bytes of x and of w as uint8 for the backward)."""
    assert x.ndim == w.ndim == 2 and x.size(1) == w.size(1), f"bad fp8_mm shapes {tuple(x.shape)} @ {tuple(w.shape)}^T"
    assert x.is_contiguous() and w.is_contiguous(), "fp8_mm needs contiguous operands"
    out, x_f8, w_f8 = _run(_forward_impl, x, w, x_s, w_s)
    return out, x_f8.view(torch.uint8), w_f8.view(torch.uint8)


@fp8_mm.register_fake
def _(x: Tensor, w: Tensor, x_s: float, w_s: float) -> tuple[Tensor, Tensor, Tensor]:
    out = x.new_empty((x.size(0), w.size(0)), dtype=torch.bfloat16)  # (N, M) row-major
    return out, torch.empty_like(x, dtype=torch.uint8), torch.empty_like(w, dtype=torch.uint8)


@torch.library.custom_op("nanogpt_tui::fp8_mm_backward", mutates_args=())
def fp8_mm_backward(grad: Tensor, x_bytes: Tensor, w_bytes: Tensor, x_s: float, w_s: float) -> tuple[Tensor, Tensor]:
    """Gradients (bf16 for x (N, K) row-major, fp32 for w (M, K) column-major) of fp8_mm from the output gradient (N, M)."""
    x_f8, w_f8 = x_bytes.view(torch.float8_e4m3fn), w_bytes.view(torch.float8_e4m3fn)
    grad_x, grad_w = _run(_backward_impl, grad.contiguous(), x_f8, w_f8, x_s, w_s)
    return grad_x, grad_w


@fp8_mm_backward.register_fake
def _(grad: Tensor, x_bytes: Tensor, w_bytes: Tensor, x_s: float, w_s: float) -> tuple[Tensor, Tensor]:
    grad_x = torch.empty_like(x_bytes, dtype=torch.bfloat16)  # (N, K) row-major
    # the real grad_w is the transpose of a row-major (K, M) product: strides (1, M), as here
    grad_w = w_bytes.new_empty((w_bytes.size(1), w_bytes.size(0)), dtype=torch.float32).T  # (M, K)
    return grad_x, grad_w


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    *_, x_s, w_s = inputs
    _, x_bytes, w_bytes = output
    ctx.save_for_backward(x_bytes, w_bytes)
    ctx.scales = x_s, w_s
    ctx.set_materialize_grads(False)


def _backward(ctx: Any, grad_out: Tensor, *_: Tensor) -> tuple:
    x_bytes, w_bytes = ctx.saved_tensors
    grad_x, grad_w = torch.ops.nanogpt_tui.fp8_mm_backward(grad_out, x_bytes, w_bytes, *ctx.scales)
    return grad_x, grad_w, None, None


fp8_mm.register_autograd(_backward, setup_context=_setup_context)


def fp8_linear(x: Tensor, weight: Tensor) -> Tensor:
    """x (..., D) @ weight (V, D)^T through fp8_mm with the head's scales; returns bf16 (..., V)."""
    assert x.dtype == torch.bfloat16, f"the FP8 head expects bf16 activations, got {x.dtype}"
    x_s, w_s = head_scales(x.size(-1))
    flat = x.flatten(0, -2).contiguous()  # (N, D)
    out = torch.ops.nanogpt_tui.fp8_mm(flat, weight.contiguous(), x_s, w_s)[0]  # (N, V)
    return out.view(*x.shape[:-1], -1)  # (..., V)
