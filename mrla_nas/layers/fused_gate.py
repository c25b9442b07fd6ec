"""MRLA-light's gate on the CPU as one autograd op: from the pooled descriptor [B, C] to the gated
depthwise kernels [B*C, 9] that the fused light branch (fused_light.py) convolves with.

The plain path (:meth:`LayerQueryKeyValue.gate` and :meth:`~LayerQueryKeyValue.value_kernels`) is
some 90 ATen calls forward and 120 backward on tensors of a few thousand elements; in a training
step each costs tens of microseconds of dispatch. The C++ op (``light_gate`` in
mrla_nas/kernels/mrla_cpu.cpp) keeps only the calls that round, with the plain path's operands, so
its results are bit for bit the plain path's (tests/test_cpu_kernels.py).
"""
from __future__ import annotations

import torch

from ..kernels import cpu_kernels
from .cpu_ops import recorded_backward
from .heads import per_head_scores, qk_product, scaled_kernels


def light_gate_formula(pooled, wq, wk, wv, heads: int, scale: float) -> torch.Tensor:
    """The op's function in the plain path's operators (for higher-order gradients)."""
    b, c = pooled.shape
    gate = torch.sigmoid(per_head_scores(*qk_product(pooled, wq, wk), heads, scale))
    return scaled_kernels(wv, b, heads, gate).reshape(b * c, 9)


class _LightGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pooled, wq, wk, wv, heads: int, scale: float):
        kernels, windows, qk, gate = cpu_kernels().light_gate(pooled, wq, wk, wv, heads, scale)
        ctx.save_for_backward(pooled, windows, qk, gate, wq, wk, wv)
        ctx.heads, ctx.scale = heads, scale
        return kernels

    @staticmethod
    def backward(ctx, grad):
        pooled, windows, qk, gate, wq, wk, wv = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            formula = lambda *t: light_gate_formula(*t, ctx.heads, ctx.scale)  # noqa: E731
            return (*recorded_backward(ctx.needs_input_grad[:4], formula, (pooled, wq, wk, wv), (grad,)), None, None)
        gy, gq, gk, gv = cpu_kernels().light_gate_backward(grad.contiguous(), windows, qk, gate, wq, wk, wv,
                                                           ctx.heads, ctx.scale)
        return gy, gq.view(wq.shape), gk.view(wk.shape), gv, None, None


def light_gate_kernels(pooled: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor, heads: int,
                       scale: float) -> torch.Tensor:
    """``sigmoid(<Q_h, K_h> * scale)`` per sample and head times ``wv``'s kernels, as [B*C, 9]; Q and K
    are the bias-free Conv1d projections ``wq``, ``wk`` [1, 1, k] of ``pooled`` [B, C]."""
    return _LightGate.apply(pooled.contiguous(), wq.contiguous(), wk.contiguous(), wv.contiguous(), heads, scale)
