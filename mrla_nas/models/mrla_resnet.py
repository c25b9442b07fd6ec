"""MRLA networks on timm's ResNet: any block type, depth, widths and stem; MRLA chosen per stage."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from timm.layers import DropPath, create_classifier, get_act_layer, get_norm_layer
from timm.models.resnet import ResNet, make_blocks
from torch import nn

from ..arch import STEMS
from .blocks import FORMS, MRLABasicBlock, MRLABottleneck, stage_block_fn
StageSpec = Dict[str, Any]  # {"form": "none"|"light"|"base", "heads": int|None, "reduction": int|None, ...}


class MRLAStage(nn.ModuleList):
    """A stage whose blocks pass MRLA-base keys/values along; a fresh memory at every stage.

    A ModuleList rather than a Sequential so that no wrapper flattens it into blocks that would
    lose the memory (state_dict keys stay ``layerN.M.*``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        memory = None
        for block in self:
            x, memory = block(x, memory)
        return x


def _stage_specs(mrla: Union[str, StageSpec, Sequence[Union[str, StageSpec]]], n: int) -> List[StageSpec]:
    if isinstance(mrla, (str, dict)):
        mrla = [mrla] * n
    specs = [dict(form=s) if isinstance(s, str) else dict(s) for s in mrla]
    if len(specs) != n:
        raise ValueError(f"mrla has {len(specs)} stage entries for {n} stages")
    for i, s in enumerate(specs):
        unknown = set(s) - {"form", "heads", "reduction", "kernel_size", "channel_wise"}
        if unknown:
            raise ValueError(f"mrla[{i}]: unknown keys {sorted(unknown)}; allowed: form, heads, reduction, "
                             "kernel_size, channel_wise")
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
                 act_layer: Any = nn.ReLU, norm_layer: Any = nn.BatchNorm2d, **block_kwargs):
        nn.Module.__init__(self)  # ResNet.__init__ would build its own fixed stem and stages
        if stem_type not in STEMS:
            raise ValueError(f"stem_type={stem_type!r}; allowed: {list(STEMS)}")
        if len(layers) != len(channels):
            raise ValueError(f"layers has {len(layers)} stages but channels has {len(channels)}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stage_specs = _stage_specs(mrla, len(layers))
        act_layer, norm_layer = get_act_layer(act_layer), get_norm_layer(norm_layer)

        inplanes = self._build_stem(stem_type, stem_width, in_chans, act_layer, norm_layer)
        stem_reduction = 1 if stem_type == "small" else 2
        self.feature_info = [dict(num_chs=inplanes, reduction=stem_reduction, module="act1")]

        block_fns = [stage_block_fn(block, **spec) for spec in self.stage_specs]
        stages, stage_info = make_blocks(block_fns, tuple(channels), tuple(layers), inplanes,
                                         act_layer=act_layer, norm_layer=norm_layer,
                                         drop_path_rate=drop_path_rate, **block_kwargs)
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

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's intermediates API: stem output, then each stage's output."""
        from timm.models._features import feature_take_indices
        take, max_index = feature_take_indices(len(self.stage_names) + 1, indices)
        x = self.act1(self.bn1(self.conv1(x)))
        intermediates = [x] if 0 in take else []
        x = self.maxpool(x)
        names = self.stage_names[:max_index] if stop_early else self.stage_names
        for i, name in enumerate(names, start=1):
            x = getattr(self, name)(x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)
