"""The MLP's c_fc -> ReLU² -> c_proj with a hand-written, cache-sized backward, for CPU training.

Autograd runs the ReLU² through about eight full passes over the (tokens, 4·dim) hidden
activations; on 2 CPU cores those passes are memory-bound and cost more than the matmuls. Here
the rows go in chunks that stay in cache and the elementwise work is four passes: relu and
square forward, square again and the chain rule backward (the factor 2 of d(r²)/dr is applied
to the small operands). Same maths as MLP.forward: y = relu(x W1^T)² W2^T.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.model.cpu_kernels import applies

# rows per chunk: 512 x 512 fp32 hidden activations are 1 MiB
CHUNK_ROWS = 512


class _Relu2MLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w_fc: Tensor, w_proj: Tensor) -> Tensor:
        """x (N, D), w_fc (H, D), w_proj (D, H) -> (N, D)."""
        relu = torch.empty(x.size(0), w_fc.size(0), dtype=x.dtype, device=x.device)  # (N, H), kept for backward
        out = torch.empty(x.size(0), w_proj.size(0), dtype=x.dtype, device=x.device)  # (N, D)
        for start in range(0, x.size(0), CHUNK_ROWS):
            stop = start + CHUNK_ROWS
            r = torch.mm(x[start:stop], w_fc.t(), out=relu[start:stop]).relu_()  # (n, H)
            torch.mm(r * r, w_proj.t(), out=out[start:stop])
        ctx.save_for_backward(x, w_fc, w_proj, relu)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, w_fc, w_proj, relu = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x)
        grad_fc = torch.zeros_like(w_fc)
        grad_proj = torch.zeros_like(w_proj)
        for start in range(0, x.size(0), CHUNK_ROWS):
            stop = start + CHUNK_ROWS
            r, g = relu[start:stop], grad_out[start:stop]  # (n, H), (n, D)
            grad_proj.addmm_(g.t(), r * r)
            # d/dh of relu(h)² = 2 relu(h); the 2 is applied to the (n, D) and (H, D) results
            grad_h = torch.mm(g, w_proj).mul_(r)  # (n, H), half the true gradient
            grad_fc.addmm_(grad_h.t(), x[start:stop], alpha=2.0)
            torch.mm(grad_h, w_fc, out=grad_x[start:stop]).mul_(2.0)
        return grad_x, grad_fc, grad_proj


def fused_relu2_mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor) -> Tensor:
    """The hand-written path of `relu2_mlp`, whatever the tensor (tests compare it with the plain one)."""
    flat = x.reshape(-1, x.size(-1))  # (N, D)
    return _Relu2MLP.apply(flat, w_fc, w_proj).view(*x.shape[:-1], w_proj.size(0))


def relu2_mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor) -> Tensor:
    """relu(x @ w_fc^T)² @ w_proj^T for x (..., D), differentiable in all three; weights cast to x's dtype."""
    if applies(x):
        return fused_relu2_mlp(x, w_fc, w_proj)
    return F.linear(F.relu(F.linear(x, w_fc.type_as(x))).square(), w_proj.type_as(x))
