"""MRLA-light's whole branch in a ResNet block as one autograd op on the CPU:

    out = o + BN(gate * Wv(o) + lambda * s)          (train or eval mode BatchNorm)

The plain PyTorch path runs this as ~10 passes over the feature map each way (GAP excluded) and
oneDNN's NCHW depthwise backward dominates it; the C++ kernels (mrla_nas/kernels/mrla_cpu.cpp)
read each plane once per pass. Same function: tests/test_fused_light.py compares both paths,
forward, every gradient and the running statistics.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels import cpu_kernels
from .cpu_ops import use_cpu_kernels


class _FusedLightBranch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, o, s, K, lam, gamma, beta, running_mean, running_var, training: bool, momentum: float,
                eps: float):
        ext = cpu_kernels()
        b, c, h, w = o.shape
        n = b * h * w
        y, psum, psumsq = ext.forward(o, s, K, lam)
        if training:
            mean = psum.sum(0) / n
            var = (psumsq.sum(0) / n - mean * mean).clamp_min(0)
            invstd = (var + eps).rsqrt()
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_((mean * momentum).to(running_mean.dtype))
                running_var.mul_(1 - momentum).add_((var * (momentum * n / max(n - 1, 1))).to(running_var.dtype))
        else:
            mean = running_mean.double()
            invstd = (running_var.double() + eps).rsqrt()
        scale = gamma.double() * invstd
        out = ext.residual_affine(o, y, scale.to(o.dtype), (beta.double() - mean * scale).to(o.dtype))
        ctx.save_for_backward(o, s, K, lam, gamma, y, mean, invstd)
        ctx.training, ctx.n = training, n
        return out

    @staticmethod
    def backward(ctx, g):
        o, s, K, lam, gamma, y, mean, invstd = ctx.saved_tensors
        ext = cpu_kernels()
        g = g.contiguous()
        sum_g, sum_gy = ext.grad_stats(g, y)
        sg, sgy = sum_g.sum(0), sum_gy.sum(0)
        dbeta = sg
        dgamma = (sgy - mean * sg) * invstd
        a = gamma.double() * invstd
        if ctx.training:  # d(BN)/dy with batch statistics: a*g + bc*y + cc per channel
            bc = -a * invstd * dgamma / ctx.n
            cc = -a * sg / ctx.n - bc * mean
        else:
            bc = cc = torch.zeros_like(a)
        dt = o.dtype
        go, gs, gK, glam = ext.backward(g, y, o, s, K, lam, a.to(dt), bc.to(dt), cc.to(dt))
        return (go, gs, gK, glam.sum(0).to(dt), dgamma.to(dt), dbeta.to(dt), None, None, None, None, None)


def fused_light_available(x: torch.Tensor, bn: nn.Module, drop_path: nn.Module) -> bool:
    """Whether :func:`fused_light_branch` applies: CPU float tensors, a plain affine BatchNorm2d with
    running statistics, no active drop-path, not under tracing (fvcore counts FLOPs on the plain path)."""
    return (type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats
            and (isinstance(drop_path, nn.Identity) or not drop_path.training) and use_cpu_kernels(x))


def fused_light_branch(o: torch.Tensor, s: torch.Tensor, kernel: torch.Tensor, lambda_t: torch.Tensor,
                       bn: nn.BatchNorm2d) -> torch.Tensor:
    """``o + bn(dw3x3(o; kernel) + lambda_t * s)``; ``kernel`` holds one gated 3x3 kernel per
    (sample, channel), shape [B*C, 9]. Updates ``bn``'s running statistics as ``bn`` would."""
    momentum = bn.momentum
    if bn.training:
        bn.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative average, as nn.BatchNorm2d does
            momentum = 1.0 / float(bn.num_batches_tracked)
    return _FusedLightBranch.apply(o.contiguous(), s.contiguous(), kernel.contiguous(),
                                   lambda_t.reshape(-1).contiguous(), bn.weight, bn.bias, bn.running_mean,
                                   bn.running_var, bn.training, momentum, bn.eps)
