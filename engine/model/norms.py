"""RMS norms with hand-written backward passes, for CPU training.

Autograd runs F.rms_norm on CPU as a chain of elementwise ops (square, mean, add, rsqrt, mul) and
walks all of them back; on 2 CPU cores that memory traffic costs more than it should: 2.1 ms ->
1.0 ms for one forward + backward over 4,096 tokens x 128. The QK-norm is worse off: with the
rotary embedding after it, autograd's backward of the rotation's slices and concatenation
allocates and zero-fills a full-size gradient for each of four slices, ~6.5 ms per layer, more
than the layer's attention matmuls. `qk_norm_rotary` does queries and keys together (they sit
side by side in the QKV projection) in three passes forward and four backward. The maths equal
the plain path's (tests hold them to it):

    n = x / sqrt(mean(x²) + eps)                          (over the last dim, eps = the dtype's eps)
    y[:r] = n[:r] cos + n[h:h+r] sin,   y[h:h+r] = n[h:h+r] cos - n[:r] sin,   the rest y = n

with h = head_dim / 2 and r = cos.size(-1) rotated pairs (the zero-frequency pairs pass through).
The backward of y = x * inv_rms is inv_rms * (g - y * mean(g * y)).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.model.cpu_kernels import applies


def _rotate_(y: Tensor, cos: Tensor, sin: Tensor, sign: float) -> None:
    """Rotate the pairs (i, h + i), i < r, of y (..., head_dim) in place; sign -1 applies the inverse rotation."""
    half, r = y.size(-1) // 2, cos.size(-1)
    a, b = y[..., :r], y[..., half:half + r]  # 2 x (..., r) views
    a_new = torch.addcmul(a * cos, b, sin, value=sign)  # a cos + sign * b sin
    b.mul_(cos).addcmul_(a, sin, value=-sign)  # b cos - sign * a sin (a still holds the old values)
    a.copy_(a_new)


def _inv_rms(x: Tensor) -> Tensor:
    """1 / sqrt(mean(x²) + eps) per row of x (..., D) -> (..., 1); one reduction pass, no squared temporary."""
    eps = torch.finfo(x.dtype).eps
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.size(-1)).add_(eps).rsqrt_()


def _norm_backward(grad_n: Tensor, n: Tensor, inv_rms: Tensor, dot: Tensor) -> Tensor:
    """The gradient of x for n = x * inv_rms (rows of D), given dot = sum(grad_n * n) per row."""
    return torch.addcmul(grad_n, n, dot, value=-1.0 / n.size(-1)).mul_(inv_rms)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        """x (..., D) -> (..., D) with unit RMS per row."""
        inv_rms = _inv_rms(x)  # (..., 1)
        y = x * inv_rms
        ctx.save_for_backward(y, inv_rms)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> Tensor:
        y, inv_rms = ctx.saved_tensors
        dot = (grad_y * y).sum(dim=-1, keepdim=True)  # (..., 1)
        return _norm_backward(grad_y, y, inv_rms, dot)


class _QKNormRotary(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x (B, T, heads, head_dim), any strides; cos, sin (1, T, 1, r) -> (B, T, heads, head_dim)."""
        inv_rms = _inv_rms(x)  # (B, T, heads, 1)
        y = x * inv_rms  # (B, T, heads, head_dim), contiguous
        _rotate_(y, cos, sin, 1.0)
        ctx.save_for_backward(y, inv_rms, cos, sin)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, None, None]:
        y, inv_rms, cos, sin = ctx.saved_tensors
        # the rotation is orthogonal, so sum(grad_n * n) over a row equals sum(grad_y * y)
        dot = (grad_y * y).sum(dim=-1, keepdim=True)  # (B, T, heads, 1)
        grad_n = grad_y.clone()
        _rotate_(grad_n, cos, sin, -1.0)  # back through the rotation: its transpose is the inverse
        n = y.clone()
        _rotate_(n, cos, sin, -1.0)  # the normalised rows before rotation
        return _norm_backward(grad_n, n, inv_rms, dot), None, None


def fused_qk_norm_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """The hand-written path of `qk_norm_rotary`, whatever the tensor (tests compare it with the plain one)."""
    return _QKNormRotary.apply(x, cos, sin)


def fused_rms_norm(x: Tensor) -> Tensor:
    """The hand-written path of `norm`, whatever the tensor."""
    return _RMSNorm.apply(x)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, T, H, head_dim) by angles with cos, sin (1, T, 1, r); computed in fp32.

    Dimension i pairs with i + head_dim/2; only the first r pairs rotate (r = cos.size(-1)), the
    rest have frequency 0 and pass through unchanged: the same result as a full-width rotation
    with cos = 1 and sin = 0 there, at half the elementwise work (which dominates on CPU).
    """
    half, r = x.size(-1) // 2, cos.size(-1)
    xf = x.float()
    x1, x2 = xf[..., :r], xf[..., half:half + r]  # 2 x (B, T, H, r)
    y1 = x1 * cos + x2 * sin
    y2 = x2 * cos - x1 * sin
    return torch.cat((y1, xf[..., r:half], y2, xf[..., half + r:]), dim=-1).type_as(x)  # (B, T, H, head_dim)


def norm(x: Tensor) -> Tensor:
    """x (..., D) normalised to unit RMS over D, without a learned scale; differentiable."""
    if applies(x):
        return _RMSNorm.apply(x)
    return F.rms_norm(x, (x.size(-1),))


def qk_norm_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RMS-normalise x (B, T, heads, head_dim) over head_dim and rotate it by cos, sin (1, T, 1, r).

    Queries and keys go through together (they sit side by side in the QKV projection); the norm
    and the rotation both act per head and position, so this equals normalising q and k apart.
    """
    if applies(x):
        return _QKNormRotary.apply(x, cos, sin)
    return apply_rotary(F.rms_norm(x, (x.size(-1),)), cos, sin)
