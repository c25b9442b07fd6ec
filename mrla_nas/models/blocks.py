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
from timm.layers import DropPath
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from ..arch import FORMS, paper_heads
from ..layers import MRLABase, MRLALight

default_heads = paper_heads  # 32 channels per head (light) / 16 (base); gcd(C, d) for other widths


class _LayerAttentionMixin:
    """Builds the MRLA branch and applies it; shared by the Bottleneck and BasicBlock variants."""

    def _init_mrla(self, channels: int, norm_layer, form: str, heads: Optional[int], reduction: Optional[int],
                   kernel_size: Optional[int], channel_wise: bool, mrla_drop_path: float) -> None:
        if form not in ("light", "base"):
            raise ValueError(f"MRLA form={form!r}; allowed: 'light', 'base' (use a plain block for 'none')")
        unit = MRLALight if form == "light" else MRLABase
        if heads is None and not channel_wise:
            heads = default_heads(form, channels)
        self.mrla_form = form
        self.mrla = unit(channels, heads=None if channel_wise else heads, kernel_size=kernel_size,
                         reduction=reduction, channel_wise=channel_wise)
        self.bn_mrla = norm_layer(channels)
        self.mrla_drop_path = DropPath(mrla_drop_path) if mrla_drop_path > 0 else nn.Identity()

    def _layer_attention(self, o: torch.Tensor, shortcut: torch.Tensor, memory):
        if self.mrla_form == "light":
            return o + self.mrla_drop_path(self.bn_mrla(self.mrla(o, shortcut)))
        attn, memory = self.mrla(o, memory)
        return o + self.mrla_drop_path(torch.relu(self.bn_mrla(attn))), memory


_MRLA_ARGS = dict(mrla_form="light", mrla_heads=None, mrla_reduction=None, mrla_kernel_size=None,
                  mrla_channel_wise=False, mrla_drop_path=0.0)


def _split_mrla_kwargs(kwargs):
    mrla = {k: kwargs.pop(k, v) for k, v in _MRLA_ARGS.items()}
    return [mrla[k] for k in _MRLA_ARGS]


class MRLABottleneck(_LayerAttentionMixin, Bottleneck):
    """timm ``Bottleneck`` + MRLA (light or base) on its output."""

    def __init__(self, inplanes: int, planes: int, *args, **kwargs):
        mrla = _split_mrla_kwargs(kwargs)
        super().__init__(inplanes, planes, *args, **kwargs)
        self._init_mrla(planes * self.expansion, kwargs.get("norm_layer", nn.BatchNorm2d), *mrla)

    def forward(self, x: torch.Tensor, memory=None):
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        return self._layer_attention(self.act3(x), shortcut, memory)


class MRLABasicBlock(_LayerAttentionMixin, BasicBlock):
    """timm ``BasicBlock`` + MRLA (light or base) on its output."""

    def __init__(self, inplanes: int, planes: int, *args, **kwargs):
        mrla = _split_mrla_kwargs(kwargs)
        super().__init__(inplanes, planes, *args, **kwargs)
        self._init_mrla(planes * self.expansion, kwargs.get("norm_layer", nn.BatchNorm2d), *mrla)

    def forward(self, x: torch.Tensor, memory=None):
        shortcut = x
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        x = self.bn2(self.conv2(x))
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        return self._layer_attention(self.act2(x), shortcut, memory)


BLOCKS = {"bottleneck": (Bottleneck, MRLABottleneck), "basic": (BasicBlock, MRLABasicBlock)}


def stage_block_fn(block: str, form: str = "none", heads: Optional[int] = None, reduction: Optional[int] = None,
                   kernel_size: Optional[int] = None, channel_wise: bool = False):
    """The block constructor timm's ``make_blocks`` calls for one stage (with ``.expansion`` as it expects)."""
    if block not in BLOCKS:
        raise ValueError(f"block={block!r}; allowed: {sorted(BLOCKS)}")
    if form not in FORMS:
        raise ValueError(f"form={form!r}; allowed: {list(FORMS)}")
    plain, with_mrla = BLOCKS[block]
    if form == "none":
        return plain
    fn = partial(with_mrla, mrla_form=form, mrla_heads=heads, mrla_reduction=reduction,
                 mrla_kernel_size=kernel_size, mrla_channel_wise=channel_wise)
    fn.expansion = with_mrla.expansion
    return fn
