"""MRLA-light's whole branch in a ResNet block as one autograd op on the CPU:

    out = o + BN(gate * Wv(o) + lambda * s)          (train or eval mode BatchNorm)

The plain PyTorch path runs this as ~10 passes over the feature map each way (GAP excluded) and
oneDNN's NCHW depthwise backward dominates it; the C++ kernels (mrla_nas/kernels/mrla_cpu.cpp)
read each plane once per pass. Same function: tests/test_cpu_kernels.py compares both paths,
forward, every gradient and the running statistics.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels import cpu_kernels
from . import fused_bn
from .cpu_ops import depthwise3x3_formula, recorded_backward


class _FusedLightBranch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, o, s, K, lam, gamma, beta, running_mean, running_var, training: bool, momentum, eps: float):
        ext = cpu_kernels()
        b, c, h, w = o.shape
        y, psum, psumsq = ext.light_forward(o, s, K, lam)
        st = fused_bn.normalize(psum, psumsq, b * h * w, gamma, beta, running_mean, running_var, training,
                                momentum, eps, o.dtype)
        out = ext.residual_affine(o, y, st.scale, st.shift, False)
        ctx.save_for_backward(o, s, K, lam, gamma, beta, y)
        ctx.bn = st
        return out

    @staticmethod
    def backward(ctx, g):
        o, s, K, lam, gamma, beta, y = ctx.saved_tensors
        ext, st, dt = cpu_kernels(), ctx.bn, o.dtype
        if torch.is_grad_enabled():  # create_graph=True
            def formula(o, s, K, lam, gamma, beta):
                return o + fused_bn.batch_norm_formula(depthwise3x3_formula(o, K) + lam.view(1, -1, 1, 1) * s,
                                                       gamma, beta, st)
            grads = recorded_backward(ctx.needs_input_grad[:6], formula, (o, s, K, lam, gamma, beta), (g,))
            return (*grads, None, None, None, None, None)
        g = g.contiguous()
        sum_g, sum_gy = ext.grad_stats(g, y, st.scale, st.shift, False)
        dgamma, dbeta, a, b, c = fused_bn.backward_coefficients(st, gamma, sum_g, sum_gy, dt)
        go, gs, gK, glam = ext.light_backward(g, y, o, s, K, lam, a, b, c)
        return (go, gs, gK, glam.sum(0).to(dt), dgamma, dbeta, None, None, None, None, None)


def fused_light_branch(o: torch.Tensor, s: torch.Tensor, kernel: torch.Tensor, lambda_t: torch.Tensor,
                       bn: nn.BatchNorm2d) -> torch.Tensor:
    """``o + bn(dw3x3(o; kernel) + lambda_t * s)``; ``kernel`` holds one gated 3x3 kernel per
    (sample, channel), shape [B*C, 9]. Updates ``bn``'s running statistics as ``bn`` would."""
    return _FusedLightBranch.apply(o.contiguous(), s.contiguous(), kernel.contiguous(),
                                   lambda_t.reshape(-1).contiguous(), bn.weight, bn.bias, bn.running_mean,
                                   bn.running_var, bn.training, fused_bn.momentum_of(bn), bn.eps)
