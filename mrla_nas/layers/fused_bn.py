"""Train/eval BatchNorm for the fused MRLA branches: per-channel constants from per-plane sums.

The C++ kernels hand back per-(sample, channel) sums in float64; the per-channel constants are
formed from them in float64 by two more C++ calls (``bn_constants``, ``bn_backward_constants`` in
mrla_nas/kernels/mrla_cpu.cpp), each operation rounded once, in this order::

    mean = sum / n                          var = (sumsq / n - mean * mean).clamp_min(0)
    invstd = 1 / sqrt(var + eps)            scale = gamma * invstd       shift = beta - mean * scale
    running_mean = running_mean * (1 - momentum) + mean * momentum
    running_var  = running_var  * (1 - momentum) + var * (momentum * n / max(n - 1, 1))

and going back, from the sums of the output gradient g and of g*y:
``dgamma = (sum_gy - mean * sum_g) * invstd``, ``dbeta = sum_g``, and ``dL/dy = a*g + b*y + c`` with
``a = gamma * invstd``, ``b = -a * invstd * dgamma / n``, ``c = -a * sum_g / n - b * mean`` in
training (b = c = 0 in eval mode, where the running statistics are constants). That is
``nn.BatchNorm2d``'s function (biased variance to normalise, unbiased for the running estimate,
cumulative average when ``momentum`` is None): tests/test_cpu_kernels.py compares the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from ..kernels import cpu_kernels


@dataclass
class BatchNormState:
    """What the forward applies and the backward needs: per-channel mean and 1/std (float64), and
    the affine map ``scale * y + shift`` in the maps' dtype."""

    mean: torch.Tensor
    invstd: torch.Tensor
    scale: torch.Tensor  # gamma * invstd
    shift: torch.Tensor  # beta - mean * scale
    training: bool
    n: int
    eps: float


def batch_norm_formula(y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, st: BatchNormState) -> torch.Tensor:
    """The normalisation the forward applied, in PyTorch operators (for higher-order gradients): the
    batch's statistics of ``y`` in training (they depend on y), the running ones (constants) in eval."""
    if st.training:
        mean = y.mean((0, 2, 3), keepdim=True)
        invstd = torch.rsqrt(y.var((0, 2, 3), unbiased=False, keepdim=True) + st.eps)
    else:
        mean, invstd = (t.to(y.dtype).view(1, -1, 1, 1) for t in (st.mean, st.invstd))
    return (y - mean) * invstd * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def momentum_of(bn: nn.BatchNorm2d) -> Optional[float]:
    """Counts the batch as nn.BatchNorm2d does and returns the running-average factor."""
    if not bn.training:
        return None
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


def normalize(psum: torch.Tensor, psumsq: torch.Tensor, n: int, gamma, beta, running_mean, running_var,
              training: bool, momentum: Optional[float], eps: float, dtype: torch.dtype) -> BatchNormState:
    """Batch (training) or running (eval) statistics; updates the running ones in training."""
    mean, invstd, scale, shift = cpu_kernels().bn_constants(
        psum, psumsq, n, gamma, beta, running_mean, running_var, training, momentum or 0.0, eps)
    return BatchNormState(mean, invstd, scale.to(dtype), shift.to(dtype), training, n, eps)


def backward_coefficients(st: BatchNormState, gamma: torch.Tensor, sum_g: torch.Tensor, sum_gy: torch.Tensor,
                          dtype: torch.dtype) -> Tuple[torch.Tensor, ...]:
    """From per-plane sums of the output gradient g (and g*y): d/dgamma, d/dbeta, and a, b, c with
    dL/dy = a*g + b*y + c per channel, in ``dtype``."""
    out = cpu_kernels().bn_backward_constants(st.mean, st.invstd, gamma, sum_g, sum_gy, st.n, st.training)
    return tuple(t.to(dtype) for t in out)
