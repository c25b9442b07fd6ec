"""Train/eval BatchNorm for the fused MRLA branches: per-channel constants from per-plane sums.

The C++ kernels hand back per-(sample, channel) sums in float64; everything per channel is done
here, in float64, and matches ``nn.BatchNorm2d`` (biased variance to normalise, unbiased for the
running estimate, cumulative average when ``momentum`` is None).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn


@dataclass
class BatchNormState:
    """What the backward needs: per-channel mean and 1/std (float64) and the affine weight."""

    mean: torch.Tensor
    invstd: torch.Tensor
    scale: torch.Tensor  # gamma * invstd
    shift: torch.Tensor  # beta - mean * scale
    training: bool
    n: int


def momentum_of(bn: nn.BatchNorm2d) -> Optional[float]:
    """Counts the batch as nn.BatchNorm2d does and returns the running-average factor."""
    if not bn.training:
        return None
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


def normalize(psum: torch.Tensor, psumsq: torch.Tensor, n: int, gamma, beta, running_mean, running_var,
              training: bool, momentum: Optional[float], eps: float) -> BatchNormState:
    """Batch (training) or running (eval) statistics; updates the running ones in training."""
    if training:
        mean = psum.sum(0) / n
        var = (psumsq.sum(0) / n - mean * mean).clamp_min(0)
        invstd = (var + eps).rsqrt()
        running_mean.mul_(1 - momentum).add_((mean * momentum).to(running_mean.dtype))
        running_var.mul_(1 - momentum).add_((var * (momentum * n / max(n - 1, 1))).to(running_var.dtype))
    else:
        mean = running_mean.double()
        invstd = (running_var.double() + eps).rsqrt()
    scale = gamma.double() * invstd
    return BatchNormState(mean, invstd, scale, beta.double() - mean * scale, training, n)


def backward_coefficients(st: BatchNormState, gamma: torch.Tensor, sum_g: torch.Tensor, sum_gy: torch.Tensor
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From per-plane sums of the output gradient g (and g*y): d/dgamma, d/dbeta, and a, b, c with
    dL/dy = a*g + b*y + c per channel."""
    sg, sgy = sum_g.sum(0), sum_gy.sum(0)
    dgamma = (sgy - st.mean * sg) * st.invstd
    a = gamma.double() * st.invstd
    if st.training:  # the batch statistics depend on y too
        b = -a * st.invstd * dgamma / st.n
        c = -a * sg / st.n - b * st.mean
    else:
        b = c = torch.zeros_like(a)
    return dgamma, sg, a, b, c
