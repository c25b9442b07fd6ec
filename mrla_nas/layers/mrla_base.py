"""MRLA-base: full softmax attention of a block over every earlier block of its stage."""
from __future__ import annotations

from typing import List, NamedTuple, Optional

import torch

from ..kernels import cpu_kernels
from .cpu_ops import _compiling, global_avg_pool, use_cpu_kernels
from .fused_attention import base_attention
from .heads import MRLAUnit, attention_weights, check_input


class LayerMemory(NamedTuple):
    """Keys and values of the blocks seen so far in a stage.

    Kept as lists, one entry per block, rather than one growing tensor: the official code
    concatenates V ([B, t, C, H, W]) at every block, which copies O(t) feature maps per block and
    is MRLA-base's main CPU cost. Nothing here is ever copied.
    """

    keys: List[torch.Tensor]    # t x [B, C]
    values: List[torch.Tensor]  # t x [B, C, H, W]

    @property
    def K(self) -> torch.Tensor:
        """Stacked keys [B, t, C] (the official layout; built on demand)."""
        return torch.stack(self.keys, 1)

    @property
    def V(self) -> torch.Tensor:
        """Stacked values [B, t, C, H, W] (the official layout; built on demand, a copy)."""
        return torch.stack(self.values, 1)


class _WeightedLayerSum(torch.autograd.Function):
    """``sum_t weights[:, :, t] * values[t]`` over per-channel weights [B, C, t].

    One pass per value in each direction and no stacked copy of the values. As a named autograd
    Function it is also a single ``prim::PythonOp.WeightedLayerSum`` node that ``mrla_nas.cost``
    gives an explicit FLOP handle.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        ctx.kernels = use_cpu_kernels(values[0]) and all(v.is_contiguous() for v in values)
        if ctx.kernels:  # one pass over each value, in C++
            ctx.save_for_backward(weights, *values)
            return cpu_kernels().weighted_sum(weights.contiguous(), list(values), False)[0]
        ctx.save_for_backward(weights, *values)
        return _plain_weighted_sum(weights, values)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        weights, *values = ctx.saved_tensors
        # the C++ backward reads the gradient and each value once (the dot products and value
        # gradients); under create_graph=True the operators below run, so that autograd records them
        if ctx.kernels and not torch.is_grad_enabled():
            *grad_values, grad_w = cpu_kernels().weighted_sum_backward(grad_out.contiguous(), weights.contiguous(),
                                                                       list(values), [])
            return (grad_w, *grad_values)
        w = weights.unsqueeze(-1).unsqueeze(-1)
        grad_w = None
        if ctx.needs_input_grad[0]:
            # per-(sample, channel) dot products; vecdot streams both maps once (bmm with 1x1
            # outputs is several times slower on CPU for large H*W)
            # (under autocast the weights are float32 and a value may be bf16/fp16: in the gradient's dtype)
            g = grad_out.flatten(2)
            grad_w = torch.stack([torch.linalg.vecdot(g, v.flatten(2).to(g.dtype)) for v in values], -1)
            grad_w = grad_w.to(weights.dtype)
        grad_values = [(grad_out * w[:, :, t]).to(values[t].dtype) if ctx.needs_input_grad[t + 1] else None
                       for t in range(len(values))]
        return (grad_w, *grad_values)


_WeightedLayerSum.__name__ = "WeightedLayerSum"


def _plain_weighted_sum(weights: torch.Tensor, values: List[torch.Tensor]) -> torch.Tensor:
    """The sum in ATen operators, accumulated in place into one fresh map (autograd allows it: no
    backward needs the running sum)."""
    w = weights.unsqueeze(-1).unsqueeze(-1)  # [B, C, t, 1, 1]
    out = values[0] * w[:, :, 0]
    for t in range(1, len(values)):
        out.addcmul_(values[t], w[:, :, t])
    return out


def weighted_layer_sum(weights: torch.Tensor, values: List[torch.Tensor]) -> torch.Tensor:
    """Per-channel weighted sum of feature maps: [B, C, t] x t*[B, C, H, W] -> [B, C, H, W]."""
    if _compiling():
        # torch.compile gets the operators themselves, which inductor fuses and differentiates: Dynamo
        # binds an autograd Function's variadic inputs wrongly (torch 2.14: the first value arrives
        # as the weights), and the Function exists for the C++ kernel and fvcore's trace, neither of
        # which runs under compilation
        return _plain_weighted_sum(weights, values)
    return _WeightedLayerSum.apply(weights, *values)


def _check_memory(memory, x: torch.Tensor) -> None:
    """The memory a unit is handed must be its stage's: one key [B, C] per value [B, C, H, W], values
    of ``x``'s shape (the same batch, channels and plane)."""
    if not isinstance(memory, LayerMemory):
        raise ValueError(f"memory is a {type(memory).__name__}; expected the LayerMemory returned by the "
                         "previous block of the stage, or None in its first block")
    if not memory.values or len(memory.keys) != len(memory.values):
        raise ValueError(f"memory holds {len(memory.keys)} keys and {len(memory.values)} values; expected one "
                         "key per value, at least one (the LayerMemory a unit returns)")
    for v in memory.values:
        if not isinstance(v, torch.Tensor) or v.shape != x.shape:
            got = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"memory holds a value of shape {got}; this block's input is {list(x.shape)} "
                             "(a memory from another stage or batch?)")
    for k in memory.keys:
        if k is not None and (not isinstance(k, torch.Tensor) or k.shape != x.shape[:2]):
            got = list(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
            raise ValueError(f"memory holds a key of shape {got}; expected [B, C] = {list(x.shape[:2])}")


class MRLABase(MRLAUnit):
    """``out = sum_t softmax_t(<Q_h, K_h,t>/sqrt(d)) V_h,t`` over the blocks of a stage so far.

    Call with ``memory=None`` in the first block of a stage; pass the returned memory on to the next
    block. Returns ``(out, memory)``.

    Args: as :class:`MRLALight` (default heads: the paper's 16 channels per head), and
        has_query: False for a stage's first block, which attends over itself alone and holds no Wq;
        has_key: False for a block no later block attends to (a stage of one block), no Wk.

    >>> unit = MRLABase(64, heads=4)
    >>> x = torch.randn(2, 64, 8, 8)
    >>> out, memory = unit(x)
    >>> out, memory = unit(x, memory)
    >>> memory.V.shape
    torch.Size([2, 2, 64, 8, 8])
    """

    form = "base"

    def forward(self, x: torch.Tensor, memory: Optional[LayerMemory] = None):
        weights, memory = self.attend(x, memory)
        if weights is None:
            # A softmax over one block is 1: the output is v itself (Wq/Wk get no gradient here,
            # exactly as in the official code).
            return memory.values[0], memory
        return weighted_layer_sum(weights, memory.values), memory

    def as_first_block(self, alone: bool = False) -> "MRLABase":
        """Drop the projections a stage's first block never uses: Wq always, Wk too when the stage
        has no later block (``alone``). Returns self."""
        self.qkv.Wq = None
        if alone:
            self.qkv.Wk = None
        return self

    def attend(self, x: torch.Tensor, memory: Optional[LayerMemory] = None):
        """This block's key and value added to the memory, and its attention over the memory's values
        as per-channel weights [B, C, t] (None in a stage's first block, where it is 1)."""
        check_input(x, "BCHW", self.qkv.channels)
        if memory is not None and not torch.jit.is_tracing():
            _check_memory(memory, x)
        v = self.qkv.value(x)
        if memory is None:
            return None, LayerMemory([self.qkv.key(x)], [v])
        if self.qkv.Wq is None:
            raise RuntimeError("this MRLA-base unit was built as a stage's first block (has_query=False): "
                               "call it with memory=None")
        qkv = self.qkv
        if qkv.Wq.reduction is None and use_cpu_kernels(x):  # the same numbers from one C++ op
            weights, k = base_attention(global_avg_pool(x), qkv.Wq.conv.weight, qkv.Wk.conv.weight, memory.keys,
                                        self.heads, qkv.scale)
            return weights, LayerMemory(memory.keys + [k], memory.values + [v])
        q, k = qkv.query_key(x)
        memory = LayerMemory(memory.keys + [k], memory.values + [v])
        return attention_weights(q, memory.keys, self.heads, qkv.scale), memory
