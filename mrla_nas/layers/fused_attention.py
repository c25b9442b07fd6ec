"""MRLA-base's attention on the CPU as one autograd op: from the pooled descriptor [B, C] and the
keys of the stage's earlier blocks to this block's per-channel weights [B, C, t] and its key.

The plain path (:meth:`MRLABase.attend`: the Q/K projection, the stacked keys, per-head scores,
softmax, one weight per channel) is about 100 ATen calls each way on small tensors, ~8% of a
training step of the default space's base network (experiments/results/speed.md). The C++ op
(``base_attention`` in mrla_nas/kernels/mrla_cpu.cpp) keeps the calls that round, on the plain path's
operands, so its numbers are bit for bit the plain path's (tests/test_cpu_kernels.py).
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from ..kernels import cpu_kernels
from .cpu_ops import recorded_backward
from .heads import attention_weights, qk_product


def base_attention_formula(pooled, wq, wk, earlier_keys: List[torch.Tensor], heads: int, scale: float):
    """The op's function in the plain path's operators (for higher-order gradients): (weights, key)."""
    q, key = qk_product(pooled, wq, wk)
    return attention_weights(q, [*earlier_keys, key], heads, scale), key


class _BaseAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pooled, wq, wk, heads: int, scale: float, *earlier_keys):
        ctx.set_materialize_grads(False)  # a key no later block reads gets no gradient, as on the plain path
        weights, key, windows, qk, keys, attn = cpu_kernels().base_attention(pooled, wq, wk, list(earlier_keys),
                                                                             heads, scale)
        ctx.save_for_backward(windows, qk, keys, attn, pooled, wq, wk, *earlier_keys)
        ctx.heads, ctx.scale = heads, scale
        return weights, key

    @staticmethod
    def backward(ctx, grad_weights, grad_key):
        windows, qk, keys, attn, pooled, wq, wk, *earlier_keys = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            needs = ctx.needs_input_grad[:3] + ctx.needs_input_grad[5:]
            formula = lambda p, q, k, *e: base_attention_formula(p, q, k, list(e), ctx.heads, ctx.scale)  # noqa: E731
            gy, gq, gk, *grad_keys = recorded_backward(needs, formula, (pooled, wq, wk, *earlier_keys),
                                                       (grad_weights, grad_key))
            return (gy, gq, gk, None, None, *grad_keys)
        if grad_weights is None:
            grad_weights = keys.new_zeros(keys.shape[0], keys.shape[2], keys.shape[1])  # [B, C, t]
        grad_key = grad_weights.new_empty(0) if grad_key is None else grad_key.contiguous()
        gy, gq, gk, *grad_keys = cpu_kernels().base_attention_backward(
            grad_weights.contiguous(), grad_key, windows, qk, keys, attn, wq, wk, ctx.heads, ctx.scale)
        return (gy, gq.view(wq.shape), gk.view(wk.shape), None, None, *grad_keys)


def base_attention(pooled: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, earlier_keys: List[torch.Tensor],
                   heads: int, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """``softmax_t(<Q_h, K_h,t> * scale)`` per channel, [B, C, t], over the earlier keys and this block's
    own (``wk``'s projection of ``pooled``, returned too); Q and K are the bias-free Conv1d
    projections ``wq``, ``wk`` [1, 1, k] of ``pooled`` [B, C]."""
    return _BaseAttention.apply(pooled.contiguous(), wq.contiguous(), wk.contiguous(), heads, scale,
                                *[k.contiguous() for k in earlier_keys])
