"""``mrla-nas space init BACKBONE``: write a search space for a network, with every legal choice.

BACKBONE is a registered MRLA model name (``mrla_light_resnet50``, ``mrla_base_deit_tiny_patch16_224``,
...), any staged timm CNN (``convnext_atto``, ``resnet50``, ``regnetx_002``, ``efficientnet_b0``: the
timm backbone, MRLA around its own blocks) or an architecture file. The space it prints validates as it stands: the network's backbone
fixed, in every stage (or group of blocks) the three forms with the paper's heads and projection,
and, as comments, every other legal head count and reduction (the divisors of that width), to be
moved into the lists that should be searched.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

from ..arch import NetworkConfig, arch_from_dict, get_backbone, load_arch
from ..arch.paper_defaults import PAPER_DIM_PER_HEAD
from ..errors import ConfigError, did_you_mean
from .datasets import DATASETS


def _registered(name: str) -> Dict[str, Any]:
    """The config of a registered MRLA model, as a dict."""
    import timm

    from ..models.registry import DEFAULT_ARCH, DEFAULT_VIT, DEIT_SIZES  # (registers the models)

    names = timm.list_models("mrla_*")
    if name not in names and timm.is_model(name):  # the user's own timm network (staged CNNs only)
        return dict(backbone="timm", model=name, stages="none")
    if name not in names:
        raise ConfigError(f"BACKBONE={name!r}: not a registered MRLA model, a timm model or a file"
                          f"{did_you_mean(name, names + timm.list_models())}; registered: {', '.join(names)}")
    if name == "mrla_resnet":
        return DEFAULT_ARCH.to_dict()
    if name == "mrla_vit":
        return DEFAULT_VIT.to_dict()
    form = "light" if "_light_" in name else "base"
    if "deit" in name:
        size = name.split("_deit_")[1].split("_")[0]
        return dict(backbone="vit", depth=12, patch_size=16, img_size=224, stages=form, **DEIT_SIZES[size])
    depth = int(name.rsplit("resnet", 1)[1])
    if depth in (50, 101):
        return dict(block="bottleneck", layers=[3, 4, 6, 3] if depth == 50 else [3, 4, 23, 3],
                    stem="deep" if form == "base" else "7x7", stages=form)
    n = (depth - 2) // 6
    return dict(block="basic", layers=[n] * 3, channels=[16, 32, 64], stem="small", stem_width=16, num_classes=10,
                stages=form)


def _smallest_size(arch: NetworkConfig, resolution: int) -> int:
    """The dataset's size, or the first of 32, 64, 128, 224 px the network takes."""
    for size in (resolution, 32, 64, 128, 224):
        try:
            arch.check_input(size)
            return size
        except ConfigError:
            continue
    return 224


def _divisors(n: int) -> List[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def space_template(source: str, dataset: str = "fashion-mnist") -> str:
    if dataset not in DATASETS:
        raise ConfigError(f"--dataset={dataset!r}: allowed: {', '.join(DATASETS)}{did_you_mean(dataset, DATASETS)}")
    arch: NetworkConfig = load_arch(source) if os.path.exists(source) else arch_from_dict(_registered(source))
    data = DATASETS[dataset]
    kind = get_backbone(arch.backbone)
    fields = kind.fields_of(arch)
    fields.update(in_chans=data.in_chans, num_classes=data.num_classes)
    resolution = data.resolution
    if arch.backbone == "timm":  # some families need more than the dataset's size (ConvNeXt: 32 px, not 28)
        arch = arch_from_dict(dict(arch.to_dict(), in_chans=data.in_chans))
        resolution = _smallest_size(arch, resolution)
    if arch.backbone == "vit":  # its position embedding fixes the input: the proxy trains at its size
        resolution = fields["img_size"]
        fields["img_size"] = None
    label = os.path.splitext(os.path.basename(source))[0]
    lines = [f"# A search space for {source}, written by `mrla-nas space init {source} --dataset {dataset}`.",
             "# It validates as it stands; move the commented choices into the lists you want searched.",
             f"name: {label}_{dataset.replace('-', '')}", "seed: 0", "backbone:"]
    if arch.backbone != "resnet":
        lines.append(f"  type: {arch.backbone}")
    for k, v in fields.items():
        value = "null" if v is None else (f"[{', '.join(map(str, v))}]" if isinstance(v, (list, tuple)) else v)
        note = "   # null: the proxy's resolution" if k == "img_size" else ""
        lines.append(f"  {k}: {value}{note}")
    dims = PAPER_DIM_PER_HEAD[kind.family]
    lines.append(f"stages:                  # one entry per {kind.stage_word}")
    for i, width in enumerate(arch.widths(), start=1):
        forms = kind.allowed_forms(fields, i - 1)
        why = "" if len(forms) == 3 else "   # " + kind.form_refusal(fields, i - 1).split(";")[0]
        lines += [f"  - # {kind.stage_word} {i}: {width} wide",
                  f"    form: [{', '.join(forms)}]{why}",
                  f"    heads: [null]        # null: the paper's ({dims['light']} / {dims['base']} channels per "
                  f"head for light / base); legal: {', '.join(map(str, _divisors(width)))}",
                  "    reduction: [null]    # null: the paper's Conv1d Q/K projection; SE-style C -> C/r -> C, "
                  f"legal r: {', '.join(map(str, _divisors(width)))}"]
    lines += ["objectives: {accuracy: max, flops: min}   # add params: min for a third objective",
              "constraints: {max_flops: null}          # e.g. 40M, 4.5G",
              "proxy:",
              f"  dataset: {dataset}",
              f"  path: {data.example_path}" + ("" if dataset == "fashion-mnist" else "   # your local copy"),
              "  train_size: 3000", "  val_size: 1000", "  epochs: 2", f"  resolution: {resolution}",
              "  batch_size: 64", "  seeds: 1", "  threads: 1",
              "search:", "  sampler: tpe", "  trials: 20", "  concurrency: 2", "  scheduler: none",
              "  initial: [none, base]" if arch.backbone == "timm" else "  initial: [none, light, base]"]
    return "\n".join(lines) + "\n"
