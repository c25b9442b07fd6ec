"""Shared shape rules of both MRLA forms: heads, the ECA kernel, the Q/K projection."""
from __future__ import annotations

import math
import numbers
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.paper_defaults import eca_kernel_size, paper_heads
from .cpu_ops import depthwise3x3, global_avg_pool, use_cpu_kernels


def _is_positive_int(n) -> bool:
    return isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1  # numpy ints too; not True


def check_input(x, shape: str, channels: int, name: str = "x", like: Optional[torch.Tensor] = None) -> None:
    """A clear ValueError for what a unit cannot take: not a floating-point tensor of ``shape``
    (``"BCHW"`` or ``"BNC"``) with ``channels`` channels (dim 1 of a map, the last of tokens), or
    not of ``like``'s shape."""
    if torch.jit.is_tracing():  # a trace records the shapes it sees: its checks would be constants
        return
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} is a {type(x).__name__}; expected a tensor [{', '.join(shape)}]")
    dim = 1 if shape == "BCHW" else -1
    if x.dim() != len(shape) or x.shape[dim] != channels:
        raise ValueError(f"{name} has shape {list(x.shape)}; expected [{', '.join(shape)}] with C={channels} "
                         "(the unit's channels)")
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}; expected a floating-point tensor")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} has shape {list(x.shape)}; expected x's {list(like.shape)}")


def resolve_heads(
    channels: int,
    heads: Optional[int] = None,
    dim_per_head: Optional[int] = None,
    channel_wise: bool = False,
) -> int:
    """Number of heads from a head count, channels per head, or channel-wise (1 channel per head).

    Exactly one of ``heads`` / ``dim_per_head`` / ``channel_wise`` decides; the count must divide
    ``channels``.
    """
    if channel_wise:
        return channels
    if heads is not None and dim_per_head is not None:
        raise ValueError(f"give heads or dim_per_head, not both (got heads={heads}, dim_per_head={dim_per_head})")
    if heads is not None:
        if not _is_positive_int(heads) or channels % heads:
            raise ValueError(f"heads={heads!r} must be a positive divisor of channels={channels}")
        return int(heads)
    if dim_per_head is None:
        raise ValueError("one of heads, dim_per_head or channel_wise is required")
    if not _is_positive_int(dim_per_head) or channels % dim_per_head:
        raise ValueError(f"dim_per_head={dim_per_head!r} must be a positive divisor of channels={channels}")
    return channels // int(dim_per_head)


# The plain path's arithmetic as functions of tensors: the units' methods below call them, and so do
# the C++ ops' formulas for higher-order gradients (fused_gate.py, fused_attention.py).

def qk_product(y: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor):
    """Q and K [B, C]: both bias-free Conv1d projections (weights [1, 1, k]) of ``y`` [B, C] as one
    [B, C, k] x [k, 2] product over its windows."""
    k = wq.numel()
    windows = F.pad(y, ((k - 1) // 2, (k - 1) // 2)).unfold(1, k, 1)                  # [B, C, k]
    return (windows @ torch.stack([wq.view(k), wk.view(k)], 1)).unbind(-1)           # [k, 2] weights


def autocasting(x: torch.Tensor) -> bool:
    """Whether autocast (bf16/fp16 mixed precision) is on for ``x``'s device."""
    try:
        return torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() if x.is_cuda else torch.is_autocast_cpu_enabled()


def _in_float32(fn, *tensors, **kwargs) -> torch.Tensor:
    """``fn`` on float32 copies of ``tensors`` with autocast off: MRLA's attention scores under mixed
    precision. ``<Q_h, K_h>`` sums d products and overflows fp16 (65,504) on large descriptors, and
    bf16's 8-bit mantissa blurs the softmax's ranking; the scores are [B, g] or [B, g, t], so float32
    costs nothing. Outside autocast ``fn`` runs as it is (the path the reference tensors pin)."""
    with torch.autocast(tensors[0].device.type, enabled=False):
        return fn(*(t.float() for t in tensors), **kwargs)


def per_head_scores(q: torch.Tensor, k: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """<Q_h, K_h> * scale for every head: [B, C] x [B, C] -> [B, g] (float32 under autocast)."""
    if autocasting(q):
        return _in_float32(per_head_scores, q, k, heads=heads, scale=scale)
    b, d = q.shape[0], q.shape[1] // heads  # sizes spelled out: an empty batch leaves -1 ambiguous
    return torch.einsum("bgd,bgd->bg", q.view(b, heads, d), k.view(b, heads, d)) * scale


def scaled_kernels(wv: torch.Tensor, batch: int, heads: int, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The depthwise weight ``wv`` [C, 1, 3, 3] for every (sample, channel), scaled by its head's gate
    [B, g] if given: [B*C, 1, 3, 3]."""
    c = wv.shape[0]
    weight = wv.unsqueeze(0)                                                # [1, C, 1, 3, 3]
    if gate is not None:
        weight = weight * gate.repeat_interleave(c // heads, dim=1).view(batch, c, 1, 1, 1)
    else:
        weight = weight.expand(batch, -1, -1, -1, -1)
    return weight.reshape(batch * c, 1, *wv.shape[-2:])


def attention_weights(q: torch.Tensor, keys: List[torch.Tensor], heads: int, scale: float) -> torch.Tensor:
    """MRLA-base's ``softmax_t(<Q_h, K_h,t> * scale)`` over t keys [B, C] each, one weight per channel:
    [B, C, t] (the scores and the softmax in float32 under autocast)."""
    if autocasting(q):
        return _in_float32(lambda q, *keys: attention_weights(q, list(keys), heads, scale), q, *keys)
    b, c = q.shape
    d = c // heads
    stacked = torch.stack(keys, 1).view(b, len(keys), heads, d)                       # [B, t, g, d]
    scores = torch.einsum("bgd,btgd->bgt", q.view(b, heads, d), stacked) * scale
    return scores.softmax(-1).repeat_interleave(d, dim=1)                            # [B, g, t] -> [B, C, t]


class ChannelProjection(nn.Module):
    """Maps the GAP descriptor [B, C] to a query or key [B, C].

    ``reduction=None`` is the paper's projection: a bias-free ``Conv1d(1, 1, k)`` sliding over the
    channel axis (ECA style). An integer ``r`` is an SE-style bottleneck ``C -> C/r -> C`` (bias-free
    linears with a ReLU between), an extension that lets the search trade cost for capacity.
    """

    def __init__(self, channels: int, kernel_size: Optional[int] = None, reduction: Optional[int] = None):
        super().__init__()
        self.reduction = reduction
        if reduction is None:
            if kernel_size is not None and (not _is_positive_int(kernel_size) or kernel_size % 2 == 0):
                raise ValueError(f"kernel_size={kernel_size!r} must be a positive odd integer (the Conv1d keeps C "
                                 "values with padding (k-1)/2), or None for the paper's ECA rule")
            k = eca_kernel_size(channels) if kernel_size is None else int(kernel_size)
            self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        else:
            if not _is_positive_int(reduction) or channels % reduction:
                raise ValueError(f"reduction={reduction!r} must be a positive divisor of channels={channels}")
            hidden = channels // reduction
            self.fc1 = nn.Linear(channels, hidden, bias=False)
            self.act = nn.ReLU(inplace=True)
            self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.reduction is None:
            return self.conv(y.unsqueeze(1)).squeeze(1)
        return self.fc2(self.act(self.fc1(y)))


class LayerQueryKeyValue(nn.Module):
    """The Q, K, V producers shared by both forms.

    Q and K come from the global-average-pooled feature map ([B, C] each); V is a depthwise 3x3 conv
    of the feature map ([B, C, H, W]).
    """

    def __init__(self, channels: int, heads: int, kernel_size: Optional[int] = None,
                 reduction: Optional[int] = None, has_query: bool = True, has_key: bool = True):
        super().__init__()
        self.channels = channels
        self.heads = heads
        self.scale = 1.0 / math.sqrt(channels // heads)
        # An MRLA-base stage's first block attends over itself alone (a softmax over one key is 1):
        # it holds no Wq, and no Wk either when no later block reads its key. A weight that never
        # gets a gradient breaks DistributedDataParallel and timm's gradient checks.
        self.Wq = ChannelProjection(channels, kernel_size, reduction) if has_query else None
        self.Wk = ChannelProjection(channels, kernel_size, reduction) if has_key else None
        self.Wv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)

    def query_key(self, x: torch.Tensor):
        """Q and K [B, C] from the global average of ``x``."""
        return self.pooled_query_key(global_avg_pool(x))

    def pooled_query_key(self, y: torch.Tensor):
        """Q and K [B, C] from the pooled descriptor ``y`` [B, C]."""
        if self.Wq is None or self.Wk is None:
            raise RuntimeError("this unit holds no query/key projection (an MRLA-base stage's first block)")
        if self.Wq.reduction is None and use_cpu_kernels(y):
            # Both Conv1d projections as one [B, C, k] x [k, 2] product: oneDNN spends 0.2-0.8 ms on
            # each tiny Conv1d forward+backward on CPU, about 3x this (experiments/results/speed.md).
            # Only where Q and K are both used: an unused Q would get a zero gradient, not None.
            return qk_product(y, self.Wq.conv.weight, self.Wk.conv.weight)
        return self.Wq(y), self.Wk(y)

    def key(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """K alone (MRLA-base's first block of a stage, whose query attends to nothing); None where
        no later block reads it."""
        return None if self.Wk is None else self.Wk(global_avg_pool(x))

    def value(self, x: torch.Tensor, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``Wv(x)``, or ``gate_h * Wv(x)_h`` for per-sample, per-head gates [B, g], in one convolution.

        One kernel per (sample, channel): a per-(sample, channel) gate on the output becomes a scaled
        kernel, so gating costs no pass over the feature map (:func:`depthwise3x3` runs it).
        """
        return depthwise3x3(x, self.value_kernels(x.shape[0], gate))

    def value_kernels(self, batch: int, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Wv's 3x3 kernel for every (sample, channel), scaled by its head's gate: [B*C, 1, 3, 3]."""
        return scaled_kernels(self.Wv.weight, batch, self.heads, gate)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """MRLA-light's ``sigmoid(<Q_h, K_h>/sqrt(d))`` per sample and head: [B, g]."""
        return self.pooled_gate(global_avg_pool(x))

    def pooled_gate(self, y: torch.Tensor) -> torch.Tensor:
        """:meth:`gate` from the pooled descriptor ``y`` [B, C]."""
        return torch.sigmoid(self.head_scores(*self.pooled_query_key(y)))

    def head_scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """<Q_h, K_h> / sqrt(d) for every head: [B, C] x [B, C] -> [B, g]."""
        return per_head_scores(q, k, self.heads, self.scale)


class MRLAUnit(nn.Module):
    """Common constructor of both forms: heads (count, channels per head, or channel-wise) and Q/K/V.

    With none of ``heads`` / ``dim_per_head`` / ``channel_wise`` given, the heads are the paper's
    for the unit's ``form`` (:func:`mrla_nas.arch.paper_heads`, the rule the configs use too).
    """

    form = "light"
    family = "resnet"  # whose paper default of channels per head applies (mrla_nas.arch.paper_defaults)

    def __init__(self, channels: int, heads: Optional[int] = None, dim_per_head: Optional[int] = None,
                 kernel_size: Optional[int] = None, reduction: Optional[int] = None, channel_wise: bool = False,
                 has_query: bool = True, has_key: bool = True):
        super().__init__()
        if not _is_positive_int(channels):
            raise ValueError(f"channels={channels!r} must be a positive integer")
        channels = int(channels)
        if heads is None and dim_per_head is None and not channel_wise:
            heads = paper_heads(self.form, channels, self.family)
        self.heads = resolve_heads(channels, heads, dim_per_head, channel_wise)
        self.qkv = LayerQueryKeyValue(channels, self.heads, kernel_size, reduction, has_query, has_key)

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on every submodule first: one clear line instead of TorchScript's
        # failure deep in the C++ ops' dispatch (autograd Functions and Python checks do not script)
        raise RuntimeError(f"{type(self).__name__} (MRLA) cannot be compiled by torch.jit.script; "
                           "torch.jit.trace, torch.export and torch.compile take MRLA networks")
