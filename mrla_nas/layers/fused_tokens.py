"""MRLA-light's value path in a DeiT block on the CPU, as one autograd op in token layout:

    out[:, :P] = u[:, :P]        out[:, P:] = gate_c * GELU(dw3x3(grid(u[:, P:]); Wv)) + lambda * p[:, P:]

The plain path (:class:`~mrla_nas.layers.TokenMRLALight`) lays the patch tokens out as a [B, C, h, w]
grid (a transposed copy), convolves, applies GELU and the gate, adds lambda * p and concatenates
the CLS token back: some ten passes over [B, N, C] tensors each way. The C++ op
(``token_light_forward`` / ``token_light_backward`` in mrla_nas/kernels/mrla_cpu.cpp) makes one
pass forward and two back, channels innermost. Same function to float rounding: its float32 erf is
ATen's own approximation and the conv adds its taps in another order (tests/test_cpu_kernels.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..kernels import cpu_kernels
from .cpu_ops import recorded_backward


def token_value_formula(u, p, wv, gate_c, lam, prefix: int, side: int) -> torch.Tensor:
    """The op's function in PyTorch operators (the plain path's, for higher-order gradients)."""
    b, n, c = u.shape
    grid = u[:, prefix:].transpose(1, 2).reshape(b, c, side, side)
    v = F.gelu(F.conv2d(grid, wv.view(c, 1, 3, 3), padding=1, groups=c)) * gate_c.view(b, c, 1, 1)
    return torch.cat([u[:, :prefix], v.flatten(2).transpose(1, 2) + lam * p[:, prefix:]], dim=1)


class _TokenLightValue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, p, wv, gate_c, lam, prefix: int, side: int):
        kt = wv.view(-1, 9).t().contiguous()  # [9, C]: each tap contiguous over the channels
        ctx.save_for_backward(u, p, wv, kt, gate_c, lam)
        ctx.prefix, ctx.side = prefix, side
        return cpu_kernels().token_light_forward(u, p, kt, gate_c, lam, prefix, side)

    @staticmethod
    def backward(ctx, grad):
        u, p, wv, kt, gate_c, lam = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            formula = lambda *t: token_value_formula(*t, ctx.prefix, ctx.side)  # noqa: E731
            grads = recorded_backward(ctx.needs_input_grad[:5], formula, (u, p, wv, gate_c, lam), (grad,))
            return (*grads, None, None)
        gu, gp, gk, ggate, glam = cpu_kernels().token_light_backward(grad.contiguous(), u, p, kt, gate_c, lam,
                                                                     ctx.prefix, ctx.side)
        return gu, gp, gk.sum(0).t().reshape(wv.shape), ggate, glam.sum(0), None, None


def token_light_value(u: torch.Tensor, p: torch.Tensor, wv: torch.Tensor, gate_c: torch.Tensor, lam: torch.Tensor,
                      prefix: int, side: int) -> torch.Tensor:
    """``u`` [B, N, C] with its patch tokens replaced by ``gate_c * GELU(dw3x3(grid; wv)) + lam * p``
    (``wv`` [C, 1, 3, 3], ``gate_c`` [B, C] one gate per channel, ``lam`` [C])."""
    return _TokenLightValue.apply(u.contiguous(), p.contiguous(), wv.contiguous(), gate_c.contiguous(),
                                  lam.contiguous(), prefix, side)
