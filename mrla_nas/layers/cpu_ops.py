"""The C++ CPU kernels (mrla_nas/kernels/mrla_cpu.cpp) behind autograd, and when they apply.

They apply to float32/float64 CPU tensors outside tracing, scripting and compilation: fvcore counts
FLOPs on a traced graph, which must show the plain operators (a depthwise ``conv2d``) it knows.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import cpu_kernels

_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)  # torch < 2.3 has none


_enabled = True


@contextlib.contextmanager
def plain_pytorch() -> Iterator[None]:
    """Run MRLA layers on their plain PyTorch path inside the block (for comparisons and debugging).

    >>> import timm, torch
    >>> model, x = timm.create_model("mrla_light_resnet20"), torch.randn(2, 3, 32, 32)
    >>> with plain_pytorch():
    ...     out = model(x)
    >>> out.shape
    torch.Size([2, 10])
    """
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def _autocast_on_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def use_cpu_kernels(x: torch.Tensor) -> bool:
    """Whether the C++ kernels can take ``x`` (they are built on first call). Not under autocast: it
    picks each operator's dtype (the Q/K projection's in bfloat16, say), and the C++ ops would
    bypass it, so the plain path runs and autocast sees its operators."""
    return (_enabled and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not torch.jit.is_scripting()
            and not torch.jit.is_tracing() and not _compiling() and not _autocast_on_cpu()
            and cpu_kernels() is not None)


def fused_branch_available(x: torch.Tensor, bn: nn.Module, drop_path: nn.Module) -> bool:
    """Whether a block's fused MRLA branch (fused_light.py, fused_base.py) applies: the kernels take
    ``x``, ``bn`` is a plain affine BatchNorm2d with running statistics, no drop-path is active."""
    return (type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats
            and (isinstance(drop_path, nn.Identity) or not drop_path.training) and use_cpu_kernels(x))


def recorded_backward(needs, formula, inputs, grads):
    """A C++ op's backward under ``create_graph=True`` (a gradient penalty, a second derivative): its
    own backward is opaque to autograd and would hand back constants, so the gradients come from
    ``formula(*inputs)``, the op's function in PyTorch operators, with their graph recorded. One
    gradient per input (None where ``needs``, the op's ``needs_input_grad`` for them, says none)."""
    wanted = [i for i, need in enumerate(needs) if need]
    with torch.enable_grad():
        # fresh aliases: the gradient of each input counts only the formula's own uses of it, not
        # paths through another input's history (the gate's kernels are a function of o), which
        # autograd follows on from here; their graph still reaches the inputs themselves
        inputs = [t.view_as(t) for t in inputs]
        outs = formula(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
    got = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wanted], [g for _, g in pairs],
                              create_graph=True, allow_unused=True)
    result = [None] * len(inputs)
    for i, g in zip(wanted, got):
        result[i] = g if g is not None else torch.zeros_like(inputs[i])
    return result


def depthwise3x3_formula(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """``x`` [B, C, H, W] convolved plane by plane with ``kernels`` [B*C, 9] in PyTorch operators."""
    b, c, h, w = x.shape
    return F.conv2d(x.reshape(1, b * c, h, w), kernels.reshape(b * c, 1, 3, 3), padding=1, groups=b * c).view(b, c, h, w)


class _Depthwise3x3(torch.autograd.Function):
    """3x3 depthwise conv (stride 1, zero padding 1) with one kernel per (sample, channel).

    oneDNN's NCHW depthwise backward is the slowest part of both MRLA forms on CPU (about 4x its
    forward); this one reads each plane once per direction (experiments/results/speed.md).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, kernels)
        return cpu_kernels().depthwise_forward(x, kernels)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, kernels = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            return tuple(recorded_backward(ctx.needs_input_grad, depthwise3x3_formula, (x, kernels), (grad,)))
        gx, gk = cpu_kernels().depthwise_backward(grad.contiguous(), x, kernels)
        return gx, gk


def depthwise3x3(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """``x`` [B, C, H, W] convolved plane by plane with ``kernels`` [B*C, 1, 3, 3] (zero padding 1)."""
    b, c, h, w = x.shape
    if use_cpu_kernels(x):
        return _Depthwise3x3.apply(x.contiguous(), kernels.reshape(b * c, 9).contiguous())
    if not torch.jit.is_tracing() and b * c == 0:  # conv2d takes no zero groups; an empty map, and the kernels' zero gradient
        return x + kernels.sum() * 0
    # the batch folded into the groups: oneDNN runs this layout faster than C groups over a batch
    return depthwise3x3_formula(x, kernels)


class _GlobalAvgPool(torch.autograd.Function):
    """[B, C, H, W] -> [B, C]; its gradient stays a broadcast view, which autograd adds into the
    feature map's other gradients in one pass (adaptive_avg_pool2d's backward first writes a full
    map of grad / (H*W))."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.mean((2, 3))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        b, c, h, w = ctx.shape
        return (grad / (h * w))[:, :, None, None].expand(b, c, h, w)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling to [B, C] (``adaptive_avg_pool2d`` where fvcore traces)."""
    if use_cpu_kernels(x):
        return _GlobalAvgPool.apply(x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)
