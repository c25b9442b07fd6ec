"""MRLA-light: the recurrent, linear-cost form of multi-head recurrent layer attention."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .cpu_ops import global_avg_pool, use_cpu_kernels
from .fused_gate import light_gate_kernels
from .heads import MRLAUnit, check_input


class MRLALight(MRLAUnit):
    """``out = sigmoid(<Q_h, K_h>/sqrt(d)) * V_h  +  lambda * o_prev`` for [B, C, H, W] features.

    Each head h gets one gate per sample from its query/key channels and scales its own channels of
    V (a depthwise 3x3 conv of ``x``). ``o_prev`` is the previous layer's output; in a ResNet it is
    the block's shortcut, so the recurrence runs through the residual stream.

    Args:
        channels: C.
        heads: number of heads g (C must divide by it); or give ``dim_per_head``. Default: the
            paper's (:func:`mrla_nas.paper.paper_heads`: int(C / 32) heads, as the official code).
        kernel_size: Conv1d kernel of the paper's Q/K projection (default: the ECA rule).
        reduction: None for the paper's Conv1d projection, or r for an SE-style C -> C/r -> C one.
        channel_wise: one channel per head.

    >>> unit = MRLALight(64, heads=2)
    >>> x = torch.randn(2, 64, 8, 8)
    >>> unit(x, x).shape
    torch.Size([2, 64, 8, 8])
    """

    form = "light"

    def __init__(self, channels: int, heads: Optional[int] = None, dim_per_head: Optional[int] = None,
                 kernel_size: Optional[int] = None, reduction: Optional[int] = None,
                 channel_wise: bool = False):
        super().__init__(channels, heads, dim_per_head, kernel_size, reduction, channel_wise)
        self.lambda_t = nn.Parameter(torch.randn(channels, 1, 1))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(<Q_h, K_h>/sqrt(d)) per sample and head: [B, g]."""
        return self.qkv.gate(x)

    def forward(self, x: torch.Tensor, o_prev: torch.Tensor) -> torch.Tensor:
        check_input(x, "BCHW", self.qkv.channels)
        check_input(o_prev, "BCHW", self.qkv.channels, "o_prev", like=x)
        gated_v = self.qkv.value(x, self.gate(x))   # gate_h * Wv(x)_h
        return torch.addcmul(gated_v, self.lambda_t, o_prev)

    def gated_kernels(self, x: torch.Tensor) -> torch.Tensor:
        """The per-(sample, channel) kernels ``gate_h * Wv`` of :meth:`forward`, as [B*C, 9] (for the
        fused block branch, mrla_nas/layers/fused_light.py)."""
        qkv = self.qkv
        if qkv.Wq.reduction is None and use_cpu_kernels(x):  # the same numbers from one C++ op
            return light_gate_kernels(global_avg_pool(x), qkv.Wq.conv.weight, qkv.Wk.conv.weight, qkv.Wv.weight,
                                      qkv.heads, qkv.scale)
        return qkv.value_kernels(x.shape[0], self.gate(x)).reshape(x.shape[0] * x.shape[1], 9)
