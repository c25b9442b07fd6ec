"""MRLA networks on timm's ResNet: any block type, depth, widths and stem; MRLA chosen per stage."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.layers import DropPath, create_classifier, get_act_layer, get_norm_layer, register_notrace_module
from timm.models import checkpoint_seq
from timm.models.resnet import ResNet, make_blocks
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..arch import FORMS
from ..arch.resnet import STEMS
from .blocks import MRLABasicBlock, MRLABottleneck, stage_block_fn
from .timm_internals import feature_take_indices
from .warm_start import warm_start as start_from
StageSpec = Dict[str, Any]  # {"form": "none"|"light"|"base", "heads": int|None, "reduction": int|None, ...}


@register_notrace_module  # a leaf for torch.fx: the memory it passes along is not a tensor
class MRLAStage(nn.ModuleList):
    """A stage whose blocks pass MRLA-base keys/values along; a fresh memory at every stage.

    A ModuleList rather than a Sequential so that no wrapper flattens it into blocks that would
    lose the memory (state_dict keys stay ``layerN.M.*``).
    """

    def __init__(self, blocks):
        super().__init__(blocks)
        self.grad_checkpointing = False
        if len(self):  # the first block attends over itself alone: no Wq (nor Wk when it is alone)
            self[0].mrla.as_first_block(alone=len(self) == 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        memory = None
        for block in self:
            x, memory = call_block(block, x, memory, self.grad_checkpointing)
        return x


def call_block(block: nn.Module, x: torch.Tensor, memory, checkpointing: bool):
    """``block(x, memory)``, recomputed in the backward pass when ``checkpointing`` (non-reentrant
    checkpointing takes the memory's lists of tensors as they are)."""
    if checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
        return checkpoint(block, x, memory, use_reentrant=False)
    return block(x, memory)


def mrla_specs(mrla: Union[str, StageSpec, Sequence[Union[str, StageSpec]]], n: int,
               allowed: Sequence[str] = ("form", "heads", "reduction", "kernel_size", "channel_wise"),
               word: str = "stage") -> List[StageSpec]:
    """One spec per stage (ResNet) or group (ViT): a form name or a dict of ``allowed`` keys."""
    if isinstance(mrla, (str, dict)):
        mrla = [mrla] * n
    specs = [dict(form=s) if isinstance(s, str) else dict(s) for s in mrla]
    if len(specs) != n:
        raise ValueError(f"mrla has {len(specs)} {word} entries for {n} {word}s")
    for i, s in enumerate(specs):
        unknown = set(s) - set(allowed)
        if unknown:
            raise ValueError(f"mrla[{i}]: unknown keys {sorted(unknown)}; allowed: {', '.join(allowed)}")
        s.setdefault("form", "none")
        if s["form"] not in FORMS:
            raise ValueError(f"mrla[{i}].form={s['form']!r}; allowed: {list(FORMS)}")
    return specs


class MRLAResNet(ResNet):
    """A timm ResNet with MRLA-light or MRLA-base per stage.

    Everything but the stem and the stage loop is timm's (``make_blocks``, its blocks, classifier,
    init, ``features_only`` support); the stem is built here because timm fixes a 64-wide 7x7 stem
    and has no small-image one.

    Args:
        block: ``"bottleneck"`` or ``"basic"``.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.
        channels: stage widths before expansion (Bottleneck outputs 4x), e.g. ``(64, 128, 256, 512)``.
        mrla: one spec for every stage or one per stage; a spec is a form name or a dict with ``form``,
            ``heads``, ``reduction``, ``kernel_size``, ``channel_wise``.
        stem_type: ``"7x7"`` (7x7 stride 2 + max-pool), ``"deep"`` (three 3x3 convs + max-pool, as in
            the official MRLA-base) or ``"small"`` (one 3x3 stride-1 conv, no pool: 28-32 px inputs).
        stem_width: 7x7 and small stems: their width; deep stem: the first two convs' width (the
            third is twice that).
        mrla_drop_path_rate: stochastic depth on the MRLA branch, linear over blocks as in timm.
        warm_start: a local checkpoint of the same network without MRLA (a config's ``pretrained``):
            loaded, and every MRLA branch started at zero (:mod:`mrla_nas.models.warm_start`).

    >>> model = MRLAResNet("basic", (1, 1, 1), (16, 32, 64), mrla="light", stem_type="small",
    ...                    stem_width=16, num_classes=10)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, block: str = "bottleneck", layers: Sequence[int] = (3, 4, 6, 3),
                 channels: Sequence[int] = (64, 128, 256, 512), mrla: Any = "light",
                 num_classes: int = 1000, in_chans: int = 3, stem_type: str = "7x7",
                 stem_width: Optional[int] = None, global_pool: str = "avg", drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, mrla_drop_path_rate: float = 0.0, zero_init_last: bool = True,
                 act_layer: Any = nn.ReLU, norm_layer: Any = nn.BatchNorm2d, warm_start: Optional[str] = None,
                 **block_kwargs):
        nn.Module.__init__(self)  # ResNet.__init__ would build its own fixed stem and stages
        if stem_type not in STEMS:
            raise ValueError(f"stem_type={stem_type!r}; allowed: {list(STEMS)}")
        if len(layers) != len(channels):
            raise ValueError(f"layers has {len(layers)} stages but channels has {len(channels)}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stage_specs = mrla_specs(mrla, len(layers))
        act_layer, norm_layer = get_act_layer(act_layer), get_norm_layer(norm_layer)

        inplanes = self._build_stem(stem_type, stem_width, in_chans, act_layer, norm_layer)
        stem_reduction = 1 if stem_type == "small" else 2
        self.feature_info = [dict(num_chs=inplanes, reduction=stem_reduction, module="act1")]

        block_fns = [stage_block_fn(block, **spec) for spec in self.stage_specs]
        # timm's make_blocks divides by (blocks - 1) for its drop-path rule: a one-block network is
        # built as two and its second block dropped (the first block's drop-path rate is 0 either way)
        alone = sum(layers) == 1
        stages, stage_info = make_blocks(block_fns, tuple(channels), (2,) if alone else tuple(layers), inplanes,
                                         act_layer=act_layer, norm_layer=norm_layer,
                                         drop_path_rate=drop_path_rate, **block_kwargs)
        if alone:
            stages = [(stages[0][0], stages[0][1][:1])]
        self.stage_names = []
        for (name, stage), spec in zip(stages, self.stage_specs):
            self.add_module(name, MRLAStage(stage) if spec["form"] == "base" else stage)
            self.stage_names.append(name)
        if stem_type == "small":  # make_blocks assumes timm's stride-4 stem
            for info in stage_info:
                info["reduction"] //= 4
        self.feature_info.extend(stage_info)

        self.num_features = self.head_hidden_size = stage_info[-1]["num_chs"]
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self._set_mrla_drop_path(mrla_drop_path_rate)
        self.init_weights(zero_init_last=zero_init_last)
        if warm_start is not None:
            start_from(self, warm_start, "this ResNet")

    def _build_stem(self, stem_type, stem_width, in_chans, act_layer, norm_layer) -> int:
        if stem_type == "deep":
            w = stem_width or 32
            self.conv1 = nn.Sequential(
                nn.Conv2d(in_chans, w, 3, stride=2, padding=1, bias=False), norm_layer(w), act_layer(inplace=True),
                nn.Conv2d(w, w, 3, stride=1, padding=1, bias=False), norm_layer(w), act_layer(inplace=True),
                nn.Conv2d(w, 2 * w, 3, stride=1, padding=1, bias=False))
            out = 2 * w
        elif stem_type == "small":
            out = stem_width or 16
            self.conv1 = nn.Conv2d(in_chans, out, 3, stride=1, padding=1, bias=False)
        else:
            out = stem_width or 64
            self.conv1 = nn.Conv2d(in_chans, out, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(out)
        self.act1 = act_layer(inplace=True)
        self.maxpool = nn.Identity() if stem_type == "small" else nn.MaxPool2d(3, stride=2, padding=1)
        return out

    def mrla_blocks(self) -> List[nn.Module]:
        """The blocks that carry an MRLA unit, in network order."""
        return [m for m in self.modules() if isinstance(m, (MRLABottleneck, MRLABasicBlock))]

    def _set_mrla_drop_path(self, rate: float) -> None:
        blocks = [b for name in self.stage_names for b in getattr(self, name)]
        for i, b in enumerate(blocks):
            if hasattr(b, "mrla_drop_path"):
                p = rate * i / max(len(blocks) - 1, 1)
                b.mrla_drop_path = DropPath(p) if p > 0 else nn.Identity()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of keeping its activations (as timm's
        ResNet; an MRLA-base stage checkpoints block by block with its memory)."""
        self.grad_checkpointing = enable
        for name in self.stage_names:
            stage = getattr(self, name)
            if isinstance(stage, MRLAStage):
                stage.grad_checkpointing = enable

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not isinstance(stage, MRLAStage) and not torch.jit.is_scripting():
            return checkpoint_seq(stage, x)  # per block, as timm's ResNet
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = self._run_stage(getattr(self, name), x)
        return x

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's intermediates API: the stem output (index 0), then each stage's output.

        As timm's ResNet: ``norm`` changes nothing (a ResNet has no final norm), ``output_fmt`` must
        be ``"NCHW"``, ``stop_early`` stops after the last stage asked for.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: a ResNet's intermediates are 'NCHW' only")
        take, max_index = feature_take_indices(len(self.stage_names) + 1, indices)
        x = self.act1(self.bn1(self.conv1(x)))
        intermediates = [x] if 0 in take else []
        x = self.maxpool(x)
        names = self.stage_names[:max_index] if stop_early else self.stage_names
        for i, name in enumerate(names, start=1):
            x = self._run_stage(getattr(self, name), x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the stages (and head) that the intermediates ``indices`` do not need, as timm's ResNet."""
        take, max_index = feature_take_indices(len(self.stage_names) + 1, indices)
        prune_end = max_index < len(self.stage_names)
        for name in self.stage_names[max_index:]:
            setattr(self, name, nn.Sequential())
        if max_index == 0:
            self.maxpool = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take
