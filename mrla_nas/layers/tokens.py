"""MRLA units for token sequences [B, N, C] (a CLS token, then a square grid of patch tokens), as
the official DeiT variants (deit/deit_mrla_light.py, deit/deit_mrla_base.py) apply them after a
transformer block's attention and MLP.

They are the CNN units (:class:`~mrla_nas.layers.MRLALight`, :class:`~mrla_nas.layers.MRLABase`) on
the patch grid, with what the DeiT versions add: LayerNorms inside the unit, GELU on light's values,
lambda as a [C] vector, the CLS token passed through (the unit's output CLS is its normalised input).
The Q/K projection, the heads, the depthwise values (C++ kernels on the CPU) and MRLA-base's weighted
sum that never copies values are the CNN units' own. Default heads: the DeiTs' 16 channels per head.

>>> unit = TokenMRLALight(64)
>>> x = torch.randn(2, 17, 64)                 # CLS + a 4x4 grid
>>> unit(x, x).shape
torch.Size([2, 17, 64])
"""
from __future__ import annotations

import math
from functools import partial
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .mrla_base import LayerMemory, MRLABase, weighted_layer_sum
from .cpu_ops import use_cpu_kernels
from .fused_tokens import token_light_value
from .heads import check_input
from .mrla_light import MRLALight

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)  # the official DeiTs' norm


def grid_side(n: int, prefix: int = 1) -> int:
    """The side of the square grid that ``n`` tokens form after ``prefix`` of them."""
    if n <= prefix:
        raise ValueError(f"{n} tokens leave no patch tokens after the {prefix} prefix token(s)")
    side = math.isqrt(n - prefix)
    if side * side != n - prefix:
        raise ValueError(f"{n - prefix} patch tokens do not form a square grid")
    return side


def tokens_to_grid(x: torch.Tensor, prefix: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split ``prefix`` tokens off [B, N, C] and lay the rest out as a square [B, C, h, w] grid."""
    b, n, c = x.shape
    side = grid_side(n, prefix)
    return x[:, :prefix], x[:, prefix:].transpose(1, 2).reshape(b, c, side, side)


def grid_to_tokens(grid: torch.Tensor) -> torch.Tensor:
    return grid.flatten(2).transpose(1, 2)


class TokenMRLALight(MRLALight):
    """``out_cls = LN_x(x)_cls``; ``out_patches = sigmoid(<Q_h,K_h>/sqrt(d)) * GELU(Wv(grid))_h +
    lambda * LN_o(o_prev)_patches``, with grid = the patch tokens of ``LN_x(x)``. ``o_prev`` is the
    block's input (the recurrence through the residual stream)."""

    family = "vit"

    def __init__(self, channels: int, heads: Optional[int] = None, dim_per_head: Optional[int] = None,
                 kernel_size: Optional[int] = None, reduction: Optional[int] = None, channel_wise: bool = False,
                 norm_layer=_LayerNorm, num_prefix_tokens: int = 1):
        super().__init__(channels, heads, dim_per_head, kernel_size, reduction, channel_wise)
        self.lambda_t = nn.Parameter(torch.randn(channels))  # [C], as the official DeiT (the CNN's is [C, 1, 1])
        self.normx = norm_layer(channels)
        self.normo = norm_layer(channels)
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: torch.Tensor, o_prev: torch.Tensor) -> torch.Tensor:
        check_input(x, "BNC", self.qkv.channels)
        check_input(o_prev, "BNC", self.qkv.channels, "o_prev", like=x)
        u, p = self.normx(x), self.normo(o_prev)
        if use_cpu_kernels(u):  # the same function as one C++ op in token layout (fused_tokens.py)
            side, c = grid_side(u.shape[1], self.num_prefix_tokens), u.shape[2]
            gate = self.qkv.pooled_gate(u[:, self.num_prefix_tokens:].mean(1))                # [B, g]
            return token_light_value(u, p, self.qkv.Wv.weight, gate.repeat_interleave(c // self.heads, dim=1),
                                     self.lambda_t, self.num_prefix_tokens, side)
        prefix, grid = tokens_to_grid(u, self.num_prefix_tokens)
        gate = self.qkv.gate(grid)                                              # [B, g]
        v = F.gelu(self.qkv.value(grid))                                        # GELU(Wv(grid))
        b, c = v.shape[:2]
        v = v * gate.repeat_interleave(c // self.heads, dim=1).view(b, c, 1, 1)
        patches = grid_to_tokens(v) + self.lambda_t * p[:, self.num_prefix_tokens:]
        return torch.cat([prefix, patches], dim=1)


class TokenMRLABase(MRLABase):
    """``out_cls = LN_x(x)_cls``; ``out_patches = sum_t softmax_t(<Q_h, K_h,t>/sqrt(d)) V_h,t`` over the
    blocks of the group so far, with grid = the patch tokens of ``LN_x(x)`` and V = Wv(grid) (no
    GELU). Returns ``(out, memory)``; ``memory=None`` starts a group."""

    family = "vit"

    def __init__(self, channels: int, heads: Optional[int] = None, dim_per_head: Optional[int] = None,
                 kernel_size: Optional[int] = None, reduction: Optional[int] = None, channel_wise: bool = False,
                 norm_layer=_LayerNorm, num_prefix_tokens: int = 1):
        super().__init__(channels, heads, dim_per_head, kernel_size, reduction, channel_wise)
        self.normx = norm_layer(channels)
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: torch.Tensor, memory: Optional[LayerMemory] = None):
        check_input(x, "BNC", self.qkv.channels)
        prefix, grid = tokens_to_grid(self.normx(x), self.num_prefix_tokens)
        weights, memory = self.attend(grid, memory)
        out = memory.values[0] if weights is None else weighted_layer_sum(weights, memory.values)
        return torch.cat([prefix, grid_to_tokens(out)], dim=1), memory
