"""MRLA-base's branch in a ResNet block as one autograd op on the CPU:

    out = o + ReLU(BN(sum_t w_t * V_t))      (w: softmax attention per (sample, channel), [B, C, t])

The weighted sum, BatchNorm's statistics, the normalisation, ReLU and the residual add become two
passes forward; backward, the gradient through ReLU and BatchNorm is formed inside the weighted
sum's backward. tests/test_cpu_kernels.py compares it with the plain PyTorch path.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from ..kernels import cpu_kernels
from . import fused_bn
from .cpu_ops import recorded_backward


class _FusedBaseBranch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, o, weights, gamma, beta, running_mean, running_var, training: bool, momentum, eps: float,
                *values):
        ext = cpu_kernels()
        b, c, h, w = o.shape
        attn, psum, psumsq = ext.weighted_sum(weights, list(values), True)
        st = fused_bn.normalize(psum, psumsq, b * h * w, gamma, beta, running_mean, running_var, training,
                                momentum, eps, o.dtype)
        out = ext.residual_affine(o, attn, st.scale, st.shift, True)
        ctx.save_for_backward(weights, gamma, beta, attn, *values)
        ctx.bn = st
        return out

    @staticmethod
    def backward(ctx, g):
        weights, gamma, beta, attn, *values = ctx.saved_tensors
        ext, st, dt = cpu_kernels(), ctx.bn, g.dtype
        if torch.is_grad_enabled():  # create_graph=True; o's gradient is g itself
            def formula(weights, gamma, beta, *values):
                a = sum(weights[:, :, t, None, None] * v for t, v in enumerate(values))
                return torch.relu(fused_bn.batch_norm_formula(a, gamma, beta, st))
            needs = ctx.needs_input_grad[1:4] + ctx.needs_input_grad[9:]
            grad_w, dgamma, dbeta, *grad_values = recorded_backward(needs, formula, (weights, gamma, beta, *values), (g,))
            return (g, grad_w, dgamma, dbeta, None, None, None, None, None, *grad_values)
        g = g.contiguous()
        sum_g, sum_gy = ext.grad_stats(g, attn, st.scale, st.shift, True)
        dgamma, dbeta, a, b, c = fused_bn.backward_coefficients(st, gamma, sum_g, sum_gy, dt)
        *grad_values, grad_w = ext.weighted_sum_backward(g, weights, values, [attn, st.scale, st.shift, a, b, c])
        return (g, grad_w, dgamma, dbeta, None, None, None, None, None, *grad_values)


def fused_base_branch(o: torch.Tensor, weights: torch.Tensor, values: List[torch.Tensor],
                      bn: nn.BatchNorm2d) -> torch.Tensor:
    """``o + relu(bn(sum_t weights[:, :, t] * values[t]))``, updating ``bn``'s running statistics as
    ``bn`` would."""
    return _FusedBaseBranch.apply(o.contiguous(), weights.contiguous(), bn.weight, bn.bias, bn.running_mean,
                                  bn.running_var, bn.training, fused_bn.momentum_of(bn), bn.eps,
                                  *[v.contiguous() for v in values])
