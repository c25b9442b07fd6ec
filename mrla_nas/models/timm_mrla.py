"""MRLA around the blocks of any staged timm CNN (timm's ResNets, ConvNeXt, RegNet, EfficientNet,
MobileNetV3, ...): the user's own network, optionally warm-started from their plain weights.

A wrapper, not a rewrite: each chosen block keeps its class's own ``forward`` and gains the MRLA
branch after it, exactly where the official code adds it (``out = block(x); out = out +
DropPath(BN(MRLA(out, o_prev)))``; :func:`mrla_nas.models.blocks.mrla_branch`, the same code as our
ResNet's blocks). The block's class becomes a subclass of itself (``MRLA_<module>_<Block>``), so its
state_dict keys are unchanged: a plain checkpoint loads as it is, and timm's ResNet wrapped here has
the keys of :class:`~mrla_nas.models.MRLAResNet`. The model stays the timm model it was:
``forward_intermediates``, ``features_only`` wrappers, gradient checkpointing, FX feature
extraction (the wrapped blocks are leaves) and ``torch.compile`` work as timm's.

Where each form runs (:mod:`mrla_nas.arch.timm_layout`): base in every block of a stage, with the
stage's keys and values kept in a :class:`StageMemory` the blocks address by position (so timm's
gradient checkpointing, which calls the blocks one by one and recomputes them in the backward pass,
reads the same memory); light in every block whose shortcut is known (its ``downsample``
projection, tapped as the block computes it, or its input where shapes agree).
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Dict, List, Optional, Sequence

import timm
import torch
from timm.layers import DropPath, register_notrace_module
from torch import nn

from ..arch import paper_heads
from ..arch.timm_layout import StageLayout, read_layout, timm_layout
from ..arch.timm_net import light_refusal
from ..errors import ConfigError
from ..layers import MRLABase, MRLALight
from .blocks import mrla_branch
from .mrla_resnet import mrla_specs
from .warm_start import warm_start as start_from


class StageMemory:
    """MRLA-base's keys and values of one stage, one entry per block position. Addressed by position
    rather than passed along, because timm's stages call their blocks as ``block(x)``; a block reads
    the entry of the block before it and writes its own, so a recomputation (gradient checkpointing)
    reads what the first pass wrote. Without autograd the last block clears it, so an evaluation
    keeps no feature maps alive after the forward pass."""

    def __init__(self, last: int):
        self.entries: Dict[int, Any] = {}
        self.last = last

    def read(self, index: int):
        return None if index == 0 else self.entries[index - 1]

    def write(self, index: int, memory) -> None:
        if index == self.last and not torch.is_grad_enabled():
            self.entries.clear()
        else:
            self.entries[index] = memory

    def __deepcopy__(self, memo):  # a copied model (EMA, ...) shares no feature maps with the original
        return StageMemory(self.last)


class _MRLAAfterBlock:
    """The MRLA branch after a timm block's own forward (mixed in before the block's class)."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        o = super().forward(x, *args, **kwargs)
        if self.mrla_form == "light":
            shortcut = x if self.mrla_shortcut == "input" else self.downsample.__dict__.pop("mrla_tapped")
            return mrla_branch(self, o, shortcut)
        memory = self.mrla_memory.read(self.mrla_index)
        out, memory = mrla_branch(self, o, None, memory)
        self.mrla_memory.write(self.mrla_index, memory)
        return out


class _ShortcutTap:
    """A shortcut projection that keeps its last output for the block's MRLA-light unit."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        self.mrla_tapped = out
        return out


@functools.lru_cache(maxsize=None)
def _mixed(mixin: type, cls: type) -> type:
    """``cls`` with ``mixin`` first; named after both and kept in this module (so pickle finds it),
    and a leaf for torch.fx (its branch picks C++ kernels or plain ops by the tensors it sees)."""
    prefix = "MRLA" if mixin is _MRLAAfterBlock else "Tapped"
    name = f"{prefix}_{cls.__module__.rpartition('.')[2]}_{cls.__name__}"
    new = type(name, (mixin, cls), {"__module__": __name__, "__qualname__": name})
    setattr(sys.modules[__name__], name, new)
    return register_notrace_module(new)


def _add_unit(block: nn.Module, form: str, width: int, heads: Optional[int], reduction: Optional[int],
              shortcut: Optional[str], norm_layer=nn.BatchNorm2d) -> None:
    heads = heads or paper_heads(form, width)
    unit = MRLALight if form == "light" else MRLABase
    block.mrla_form = form
    block.mrla = unit(width, heads=heads, reduction=reduction)
    block.bn_mrla = norm_layer(width)
    block.mrla_drop_path = nn.Identity()
    block.mrla_shortcut = shortcut
    # the official init (MRLA.md): Wv kaiming-normal fan_out, BN_mrla weight 1 bias 0, lambda ~ N(0, 1)
    nn.init.kaiming_normal_(block.mrla.qkv.Wv.weight, mode="fan_out", nonlinearity="relu")
    if form == "light" and shortcut == "downsample":
        block.downsample.__class__ = _mixed(_ShortcutTap, type(block.downsample))
    block.__class__ = _mixed(_MRLAAfterBlock, type(block))


def add_mrla(model: nn.Module, layout_stages: Sequence[StageLayout], specs: Sequence[Dict[str, Any]],
             mrla_drop_path_rate: float = 0.0) -> List[nn.Module]:
    """Add MRLA to ``model``'s blocks in place, one spec (form, heads, reduction) per stage; returns
    the blocks that carry a unit, in network order."""
    modules = dict(model.named_modules())
    carried = []
    for stage, spec in zip(layout_stages, specs):
        form = spec.get("form", "none")
        if form == "none":
            continue
        indices = stage.light_blocks() if form == "light" else tuple(range(stage.depth))
        memory = StageMemory(last=len(indices) - 1) if form == "base" else None
        for position, i in enumerate(indices):
            block = modules[stage.block_paths[i]]
            _add_unit(block, form, stage.width, spec.get("heads"), spec.get("reduction"), stage.shortcuts[i])
            if form == "base":
                block.mrla_memory, block.mrla_index = memory, position
                if position == 0:  # attends over itself alone: no Wq (nor Wk when no later block reads it)
                    block.mrla.as_first_block(alone=len(indices) == 1)
            carried.append(block)
    for i, block in enumerate(carried):  # stochastic depth on the branch, linear over blocks as in timm
        p = mrla_drop_path_rate * i / max(len(carried) - 1, 1)
        block.mrla_drop_path = DropPath(p) if p > 0 else nn.Identity()
    return carried


# ---- the network -----------------------------------------------------------------------------
def mrla_timm_model(model: str, mrla: Any = "none", in_chans: int = 3, num_classes: int = 1000,
                    drop_path_rate: float = 0.0, mrla_drop_path_rate: float = 0.0,
                    warm_start: Optional[str] = None, **timm_kwargs) -> nn.Module:
    """timm's ``model`` with MRLA per stage (``mrla``: a form name or one spec per stage, as
    :class:`~mrla_nas.models.MRLAResNet` takes it).

    ``warm_start``: a local checkpoint of the plain model (a config's ``pretrained``); the MRLA branches
    then start at zero, so the untrained network computes exactly what the pretrained one does, and
    learns its MRLA from there (:mod:`mrla_nas.models.warm_start`).

    >>> net = mrla_timm_model("resnet18", ["none", "light", "base", "none"], num_classes=10)
    >>> net(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    net = timm.create_model(model, pretrained=False, in_chans=in_chans, num_classes=num_classes,
                            drop_path_rate=drop_path_rate, **timm_kwargs)
    # the layout is the model's, read once per process (arch.timm_layout caches it); only timm keyword
    # arguments that may change the stages (layers=, channels=, ...) make it be read off this network
    layout = read_layout(net, model, in_chans) if timm_kwargs else timm_layout(model, in_chans)
    specs = mrla_specs(mrla, len(layout.stages), allowed=("form", "heads", "reduction"))
    for i, (stage, spec) in enumerate(zip(layout.stages, specs)):
        if spec["form"] == "light" and not stage.light_blocks():
            raise ConfigError(f"stages[{i}].form='light': {light_refusal(layout, i)}")
    add_mrla(net, layout.stages, specs, mrla_drop_path_rate)
    if warm_start is not None:
        start_from(net, warm_start, model)
    net.mrla_stage_specs = specs
    net.mrla_layout = layout
    return net
