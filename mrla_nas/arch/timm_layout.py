"""Where the stages and blocks of a timm CNN are, and which blocks can carry which MRLA form: read
off the plain model, generically (no table of families).

One source for the config (its widths, its checks) and the wrapper that builds the network
(:mod:`mrla_nas.models.timm_mrla`). torch and timm are imported when a layout is first read, never
at import: the configs stay torch-free for the command line.

The rules, the same for every family:

- **Stages** are the model's own stage containers, found from timm's ``feature_info``: where the
  feature modules are numbered children of one container (``stages.0``, ``blocks.3``), every child
  of that container is a stage (EfficientNet's and MobileNetV3's feature taps skip some); otherwise
  the feature modules themselves (``layer1``, ``s1``), less the stem (a module named ``stem`` or
  one whose children hold no weights: ``act1``, ``bn1``).
- **Blocks** are the children of the stage's ``blocks`` container where it has one (ConvNeXt),
  else the stage's children.
- **MRLA-base** may run in every block of a stage: it reads only each block's output.
- **MRLA-light** needs the block's shortcut as ``o_prev`` (the official code's). A block that exposes
  its shortcut projection (``downsample``: timm's ResNets, RegNets) gives it; a block whose input
  and output shapes agree gives its input; a block that changes shape without a projection
  (EfficientNet's and MobileNetV3's first block of a stage) carries no light unit, and the stage's
  recurrence starts at its first block whose shapes agree.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..errors import ConfigError, did_you_mean, show

PROBE_SIZE = 64  # px: shapes agree or not by channels and stride, not by size; small keeps the probe fast


@dataclass(frozen=True)
class StageLayout:
    path: str                        # the stage container, as named_modules names it
    block_paths: Tuple[str, ...]     # its blocks, in order
    width: int                       # every block's output channels
    shortcuts: Tuple[Optional[str], ...]  # per block: "downsample", "input" or None (no light unit)

    @property
    def depth(self) -> int:
        return len(self.block_paths)

    def light_blocks(self) -> Tuple[int, ...]:
        return tuple(i for i, s in enumerate(self.shortcuts) if s is not None)


@dataclass(frozen=True)
class TimmLayout:
    model: str
    stages: Tuple[StageLayout, ...]

    def widths(self) -> Tuple[int, ...]:
        return tuple(s.width for s in self.stages)


def _weighted_children(module) -> bool:
    return any(any(True for _ in c.parameters()) for c in module.children())


def find_stages(model) -> List[Tuple[str, List[str]]]:
    """(stage path, block paths) of a timm CNN, by the rules above."""
    modules = dict(model.named_modules())
    infos = getattr(model, "feature_info", None)
    names = [f["module"] for f in infos] if isinstance(infos, list) else []
    taps = [n for n in names if n in modules and n.rpartition(".")[2] != "stem" and _weighted_children(modules[n])]
    parents = {n.rpartition(".")[0] for n in taps}
    if len(parents) == 1 and (parent := next(iter(parents))) and all(
            k.isdigit() for k, _ in modules[parent].named_children()):
        stage_paths = [f"{parent}.{k}" for k, _ in modules[parent].named_children()]
    else:
        stage_paths = taps
    out = []
    for path in stage_paths:
        stage = modules[path]
        inner = getattr(stage, "blocks", None)
        prefix, container = (f"{path}.blocks", inner) if inner is not None and hasattr(inner, "named_children") else (
            path, stage)
        out.append((path, [f"{prefix}.{k}" for k, _ in container.named_children()]))
    return out


def _not_a_staged_cnn(name: str, why: str) -> ConfigError:
    return ConfigError(f"backbone.model={show(name)}: {why}; the timm backbone serves staged CNNs (timm's resnet*, "
                       "convnext_*, regnet*, efficientnet_*, mobilenetv3_*, ...)")


def read_layout(model, name: str, in_chans: int) -> TimmLayout:
    """The layout of a built plain timm model, probed with one image in eval mode (its BatchNorm
    statistics untouched)."""
    import torch

    if hasattr(model, "patch_embed") or hasattr(model, "cls_token"):
        raise ConfigError(f"backbone.model={show(name)}: a vision transformer; MRLA in ViTs is the vit backbone "
                          "(backbone.type: vit)")
    stages = find_stages(model)
    if not stages or not all(blocks for _, blocks in stages):
        raise _not_a_staged_cnn(name, "no stages of blocks found in its feature_info")
    modules = dict(model.named_modules())
    shapes = {}
    hooks = [modules[b].register_forward_hook(
        lambda m, args, out, b=b: shapes.__setitem__(b, (tuple(args[0].shape) if args else None, tuple(out.shape))))
        for _, blocks in stages for b in blocks]
    was_training = model.training
    # a small image first; a model that needs more (a fixed input size) at its own default size
    default = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (in_chans, 224, 224))[-1]
    try:
        model.eval()
        for size in dict.fromkeys((PROBE_SIZE, default)):
            try:
                with torch.no_grad():
                    model(torch.zeros(1, in_chans, size, size))
                break
            except Exception as e:  # noqa: BLE001 - any failure of the probe is the same answer
                failure = f"a {size} px probe image failed in it ({type(e).__name__})"
                shapes.clear()
        else:
            raise _not_a_staged_cnn(name, failure)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    out = []
    for path, blocks in stages:
        if any(b not in shapes or len(shapes[b][1]) != 4 for b in blocks):
            raise _not_a_staged_cnn(name, f"the blocks of {path} do not all map a [B, C, H, W] feature map")
        outs = {shapes[b][1][1:] for b in blocks}
        if len(outs) != 1:
            raise _not_a_staged_cnn(name, f"the blocks of {path} give outputs of different shapes {sorted(outs)}")
        shortcuts = []
        for b in blocks:
            inp, o = shapes[b]
            projection = getattr(modules[b], "downsample", None)
            if projection is not None and any(True for _ in projection.parameters()):
                shortcuts.append("downsample")
            elif inp == o:
                shortcuts.append("input")
            else:
                shortcuts.append(None)
        out.append(StageLayout(path, tuple(blocks), shapes[blocks[0]][1][1], tuple(shortcuts)))
    return TimmLayout(name, tuple(out))


def timm_layout(name: str, in_chans: int = 3, where: str = "backbone.model") -> TimmLayout:
    """The layout of timm's ``name`` (built once per process, without weights); a ConfigError naming
    ``where`` for a name that is not a staged CNN."""
    try:
        return _timm_layout(name, in_chans)
    except ConfigError as e:
        raise ConfigError(str(e).replace("backbone.model", where, 1)) from None


@functools.lru_cache(maxsize=64)
def _timm_layout(name: str, in_chans: int) -> TimmLayout:
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        hint = did_you_mean(name, timm.list_models()) if isinstance(name, str) else ""
        raise ConfigError(f"backbone.model={show(name)}: not a timm model name{hint or '; see timm.list_models()'}")
    if name.startswith("mrla_"):
        raise ConfigError(f"backbone.model={show(name)}: already an mrla-nas network; name the plain timm model")
    model = timm.create_model(name, pretrained=False, in_chans=in_chans)
    return read_layout(model, name, in_chans)


@functools.lru_cache(maxsize=64)
def input_refusal(name: str, in_chans: int, resolution: int) -> str:
    """Why timm's ``name`` cannot take one ``resolution`` px image ("" when it can): tried, since the
    smallest size depends on each family's padding (a ResNet takes 28 px, a ConvNeXt needs 32)."""
    import timm
    import torch

    model = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=0).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, resolution, resolution))
    except RuntimeError as e:
        return f"{name} cannot take {resolution} px images ({str(e).splitlines()[0][:120]})"
    return ""

