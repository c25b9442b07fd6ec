"""timm's ResNet blocks with an MRLA unit after the residual sum.

The residual part is timm's own (its modules, its init, its options); these subclasses only add
the layer-attention branch, exactly where the official implementation puts it:

    o   = act(residual(x) + shortcut(x))
    out = o + DropPath(BN_mrla(MRLALight(o, shortcut)))          # light
    out = o + DropPath(ReLU(BN_mrla(MRLABase(o, memory))))       # base, memory passed along the stage
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch
from timm.layers import DropPath, register_notrace_module
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from ..arch import FORMS, paper_heads
from ..layers import MRLABase, MRLALight
from ..layers.cpu_ops import fused_branch_available
from ..layers.fused_base import fused_base_branch
from ..layers.fused_light import fused_light_branch

class _LayerAttentionMixin:
    """The MRLA branch on top of a timm block; the block subclass supplies ``_residual`` and ``_out_act``."""

    def __init__(self, inplanes: int, planes: int, *args, mrla_form: str = "light", mrla_heads: Optional[int] = None,
                 mrla_reduction: Optional[int] = None, mrla_kernel_size: Optional[int] = None,
                 mrla_channel_wise: bool = False, mrla_drop_path: float = 0.0, **kwargs):
        super().__init__(inplanes, planes, *args, **kwargs)
        if mrla_form not in ("light", "base"):
            raise ValueError(f"MRLA form={mrla_form!r}; allowed: 'light', 'base' (use a plain block for 'none')")
        channels = planes * self.expansion
        heads = None if mrla_channel_wise else (mrla_heads or paper_heads(mrla_form, channels))
        unit = MRLALight if mrla_form == "light" else MRLABase
        self.mrla_form = mrla_form
        self.mrla = unit(channels, heads=heads, kernel_size=mrla_kernel_size, reduction=mrla_reduction,
                         channel_wise=mrla_channel_wise)
        self.bn_mrla = kwargs.get("norm_layer", nn.BatchNorm2d)(channels)
        self.mrla_drop_path = DropPath(mrla_drop_path) if mrla_drop_path > 0 else nn.Identity()

    def block_output(self, x: torch.Tensor):
        """timm's block up to its output ``o = act(residual(x) + shortcut(x))``: (o, shortcut), the
        MRLA branch's two inputs."""
        shortcut = x
        x = self._residual(x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        return self._out_act(x), shortcut

    def forward(self, x: torch.Tensor, memory=None):
        o, shortcut = self.block_output(x)
        return mrla_branch(self, o, shortcut, memory)


def mrla_branch(host: nn.Module, o: torch.Tensor, shortcut: Optional[torch.Tensor], memory=None):
    """The MRLA branch after a block's output ``o``, as the official code adds it (one definition for
    our ResNet blocks and the wrapped blocks of any timm CNN, :mod:`mrla_nas.models.timm_mrla`).
    ``host`` holds ``mrla_form``, ``mrla``, ``bn_mrla``, ``mrla_drop_path`` and, in a warm-started
    MRLA-base block, ``mrla_scale`` (after the ReLU). Light: the new output; base: (the new output, the
    stage's memory)."""
    scale = getattr(host, "mrla_scale", None)
    fused = scale is None and fused_branch_available(o, host.bn_mrla, host.mrla_drop_path)  # C++, same function
    if host.mrla_form == "light":
        if fused:
            return fused_light_branch(o, shortcut, host.mrla.gated_kernels(o), host.mrla.lambda_t, host.bn_mrla)
        return o + host.mrla_drop_path(host.bn_mrla(host.mrla(o, shortcut)))
    if fused:
        weights, memory = host.mrla.attend(o, memory)
        if weights is None:  # a stage's first block: the attention is 1 over its own value
            weights = o.new_ones(o.shape[0], o.shape[1], 1)
        return fused_base_branch(o, weights, memory.values, host.bn_mrla), memory
    attn, memory = host.mrla(o, memory)
    branch = torch.relu_(host.bn_mrla(attn))
    return o + host.mrla_drop_path(branch if scale is None else scale(branch)), memory


# torch.fx cannot trace the branch (it picks the C++ kernels or the plain path by the tensors it
# sees) and an MRLA-base stage passes a memory between blocks: timm's FX feature extraction keeps
# these blocks whole, as leaves of the graph, and calls them as they are.
@register_notrace_module
class MRLABottleneck(_LayerAttentionMixin, Bottleneck):
    """timm ``Bottleneck`` + MRLA (light or base) on its output."""

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
        return self.bn3(self.conv3(x))

    def _out_act(self, x: torch.Tensor) -> torch.Tensor:
        return self.act3(x)


@register_notrace_module
class MRLABasicBlock(_LayerAttentionMixin, BasicBlock):
    """timm ``BasicBlock`` + MRLA (light or base) on its output."""

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        return self.bn2(self.conv2(x))

    def _out_act(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(x)


# block type -> (timm's plain block, the same block with an MRLA unit)
BLOCK_CLASSES = {"bottleneck": (Bottleneck, MRLABottleneck), "basic": (BasicBlock, MRLABasicBlock)}


def stage_block_fn(block: str, form: str = "none", heads: Optional[int] = None, reduction: Optional[int] = None,
                   kernel_size: Optional[int] = None, channel_wise: bool = False):
    """The block constructor timm's ``make_blocks`` calls for one stage (with ``.expansion`` as it expects)."""
    if block not in BLOCK_CLASSES:
        raise ValueError(f"block={block!r}; allowed: {sorted(BLOCK_CLASSES)}")
    if form not in FORMS:
        raise ValueError(f"form={form!r}; allowed: {list(FORMS)}")
    plain, with_mrla = BLOCK_CLASSES[block]
    if form == "none":
        return plain
    fn = partial(with_mrla, mrla_form=form, mrla_heads=heads, mrla_reduction=reduction,
                 mrla_kernel_size=kernel_size, mrla_channel_wise=channel_wise)
    fn.expansion = with_mrla.expansion
    return fn
