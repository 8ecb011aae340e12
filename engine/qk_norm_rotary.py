"""QK-norm and the rotary embedding of queries and keys in one step with a hand-written backward, for CPU training.

Autograd runs `apply_rotary(norm(q))` as a chain of about a dozen elementwise ops per tensor, and
the backward of its slices and concatenation allocates and zero-fills a full-size gradient for
each of the four slices. On 2 CPU cores that memory traffic cost ~6.5 ms per layer, more than the
layer's attention matmuls. Here queries and keys go through together (they sit side by side in
the QKV projection) in three passes forward and four backward. Same maths as the plain path:

    n = x / sqrt(mean(x²) + eps)                          (RMS norm over head_dim, eps = fp32 eps)
    y[:r] = n[:r] cos + n[h:h+r] sin,   y[h:h+r] = n[h:h+r] cos - n[:r] sin,   the rest y = n

with h = head_dim / 2 and r = cos.size(-1) rotated pairs (the zero-frequency pairs pass through).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _rotate_(y: Tensor, cos: Tensor, sin: Tensor, sign: float) -> None:
    """Rotate the pairs (i, h + i), i < r, of y (..., head_dim) in place; sign -1 applies the inverse rotation."""
    half, r = y.size(-1) // 2, cos.size(-1)
    a, b = y[..., :r], y[..., half:half + r]  # 2 x (..., r) views
    a_new = torch.addcmul(a * cos, b, sin, value=sign)  # a cos + sign * b sin
    b.mul_(cos).addcmul_(a, sin, value=-sign)  # b cos - sign * a sin (a still holds the old values)
    a.copy_(a_new)


class _QKNormRotary(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x (B, T, heads, head_dim), any strides; cos, sin (1, T, 1, r) -> (B, T, heads, head_dim)."""
        head_dim = x.size(-1)
        eps = torch.finfo(x.dtype).eps
        # 1 / rms per row: the L2 norm is a single reduction pass without a squared temporary
        inv_rms = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(head_dim).add_(eps).rsqrt_()
        y = x * inv_rms  # (B, T, heads, head_dim), contiguous
        _rotate_(y, cos, sin, 1.0)
        ctx.save_for_backward(y, inv_rms, cos, sin)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, None, None]:
        y, inv_rms, cos, sin = ctx.saved_tensors
        head_dim = y.size(-1)
        # the rotation is orthogonal, so sum(grad_n * n) over a row equals sum(grad_y * y)
        dot = (grad_y * y).sum(dim=-1, keepdim=True)  # (B, T, heads, 1)
        grad_n = grad_y.clone()
        _rotate_(grad_n, cos, sin, -1.0)  # back through the rotation: its transpose is the inverse
        n = y.clone()
        _rotate_(n, cos, sin, -1.0)  # the normalised rows before rotation
        # d/dx of x * inv_rms: inv_rms * (grad_n - n * mean(grad_n * n))
        grad_x = grad_n.addcmul_(n, dot, value=-1.0 / head_dim).mul_(inv_rms)
        return grad_x, None, None


def qk_norm_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RMS-normalise x (B, T, heads, head_dim) over head_dim and rotate it by cos, sin (1, T, 1, r)."""
    return _QKNormRotary.apply(x, cos, sin)
