"""The MRLA networks registered in timm (``timm.create_model("mrla_light_resnet50", ...)``)."""
from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import FeatureGetterNet  # not re-exported by timm.models; build_model_with_cfg uses it the same way
from torch import nn

from ..arch import ArchConfig, arch_from_dict
from .build import as_arch
from .mrla_resnet import MRLAResNet
from .mrla_vit import MRLAVisionTransformer
from .timm_mrla import mrla_timm_model


def _cfg(**kwargs):
    # No weights are published under these names: the official checkpoints load through
    # mrla_nas.models.from_official_state_dict, and nothing here ever downloads.
    cfg = dict(url="", num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
               interpolation="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
               first_conv="conv1", classifier="fc")
    return dict(cfg, **kwargs)


def _deit_cfg(**kwargs):
    # timm's DeiT configuration: 224 px, fixed input (the position embedding), the class token's head
    return _cfg(pool_size=None, crop_pct=0.9, interpolation="bicubic", fixed_input_size=True,
                first_conv="patch_embed.proj", classifier="head", **kwargs)


def _small_cfg(**kwargs):
    return _cfg(input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0, num_classes=10, **kwargs)


default_cfgs = generate_default_cfgs({
    "mrla_light_resnet50": _cfg(),
    "mrla_base_resnet50": _cfg(first_conv="conv1.0"),
    "mrla_light_resnet101": _cfg(),
    "mrla_base_resnet101": _cfg(first_conv="conv1.0"),
    "mrla_light_resnet20": _small_cfg(),
    "mrla_base_resnet20": _small_cfg(),
    "mrla_light_resnet56": _small_cfg(),
    "mrla_base_resnet56": _small_cfg(),
    "mrla_resnet": _cfg(),
    **{f"mrla_{form}_deit_{size}_patch16_224": _deit_cfg() for form in ("light", "base")
       for size in ("tiny", "small", "base")},
    "mrla_vit": _deit_cfg(),
    "mrla_timm": {},  # the wrapped timm model keeps its own pretrained_cfg
})


def _create(variant: str, pretrained: bool = False, **kwargs) -> MRLAResNet:
    if pretrained:
        raise ValueError(f"{variant}: no pretrained weights are registered; load an official checkpoint "
                         "with mrla_nas.models.from_official_state_dict")
    # features_only: every stage by default, however many the network has
    n_stages = len(kwargs.get("layers", (3, 4, 6, 3)))
    return build_model_with_cfg(MRLAResNet, variant, pretrained,
                                feature_cfg=dict(out_indices=tuple(range(n_stages + 1))), **kwargs)


def _imagenet(variant, form, layers, pretrained, kwargs):
    stem = dict(stem_type="deep" if form == "base" else "7x7")
    args = dict(block="bottleneck", layers=layers, mrla=form, **stem)
    return _create(variant, pretrained, **dict(args, **kwargs))


def _cifar(variant, form, depth, pretrained, kwargs):
    n = (depth - 2) // 6  # CIFAR ResNet-(6n+2): three stages of n basic blocks, 16/32/64 wide
    args = dict(block="basic", layers=(n, n, n), channels=(16, 32, 64), mrla=form, stem_type="small",
                stem_width=16, num_classes=10)
    return _create(variant, pretrained, **dict(args, **kwargs))


@register_model
def mrla_light_resnet50(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-light ResNet-50 (7x7 stem), as the official ``resnet50_mrlal``."""
    return _imagenet("mrla_light_resnet50", "light", (3, 4, 6, 3), pretrained, kwargs)


@register_model
def mrla_base_resnet50(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-base ResNet-50 with the official deep stem (3x3 convs 32-32-64), as ``resnet50_mrlab``."""
    return _imagenet("mrla_base_resnet50", "base", (3, 4, 6, 3), pretrained, kwargs)


@register_model
def mrla_light_resnet101(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-light ResNet-101 (7x7 stem), as the official ``resnet101_mrlal``."""
    return _imagenet("mrla_light_resnet101", "light", (3, 4, 23, 3), pretrained, kwargs)


@register_model
def mrla_base_resnet101(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-base ResNet-101 with the official deep stem, as ``resnet101_mrlab``."""
    return _imagenet("mrla_base_resnet101", "base", (3, 4, 23, 3), pretrained, kwargs)


@register_model
def mrla_light_resnet20(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-light CIFAR ResNet-20 (3x3 stem, no pool) for 28-32 px inputs."""
    return _cifar("mrla_light_resnet20", "light", 20, pretrained, kwargs)


@register_model
def mrla_base_resnet20(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-base CIFAR ResNet-20 (3x3 stem, no pool) for 28-32 px inputs."""
    return _cifar("mrla_base_resnet20", "base", 20, pretrained, kwargs)


@register_model
def mrla_light_resnet56(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-light CIFAR ResNet-56 (3x3 stem, no pool) for 28-32 px inputs."""
    return _cifar("mrla_light_resnet56", "light", 56, pretrained, kwargs)


@register_model
def mrla_base_resnet56(pretrained=False, **kwargs) -> MRLAResNet:
    """MRLA-base CIFAR ResNet-56 (3x3 stem, no pool) for 28-32 px inputs."""
    return _cifar("mrla_base_resnet56", "base", 56, pretrained, kwargs)


# What ``mrla_resnet`` builds without ``arch=``: the paper's headline network, MRLA-light ResNet-50.
DEFAULT_ARCH = arch_from_dict({"stages": "light"})


@register_model
def mrla_resnet(pretrained=False, arch=None, **kwargs) -> MRLAResNet:
    """Any MRLA ResNet from an ``arch=`` ArchConfig, dict or YAML path (what ``mrla-nas export`` writes);
    without ``arch=``, MRLA-light ResNet-50 (``DEFAULT_ARCH``).

    Other keyword arguments (``num_classes``, ``in_chans``, ``drop_path_rate``, ...) override the config's.
    """
    arch = DEFAULT_ARCH if arch is None else as_arch(arch)
    if not isinstance(arch, ArchConfig):
        raise ValueError(f"mrla_resnet: arch is a {arch.backbone} config; use timm.create_model('mrla_{arch.backbone}', "
                         "arch=...) or mrla_nas.build_model")
    return _create("mrla_resnet", pretrained, **dict(arch.model_kwargs(), **kwargs))


# What ``mrla_vit`` builds without ``arch=``: MRLA-light DeiT-T.
DEFAULT_VIT = arch_from_dict({"backbone": "vit", "stages": "light"})


@register_model
def mrla_vit(pretrained=False, arch=None, **kwargs) -> MRLAVisionTransformer:
    """Any MRLA ViT from an ``arch=`` ViT config, dict or YAML path (what ``mrla-nas export`` writes for
    a ViT space); without ``arch=``, MRLA-light DeiT-T (``DEFAULT_VIT``)."""
    arch = DEFAULT_VIT if arch is None else as_arch(arch)
    if arch.backbone != "vit":
        raise ValueError(f"mrla_vit: arch is a {arch.backbone} config; use timm.create_model('mrla_resnet', arch=...)")
    if pretrained:
        raise ValueError("mrla_vit: no pretrained weights are registered")
    kwargs = dict(arch.model_kwargs(), **kwargs)
    out_indices = kwargs.pop("out_indices", 3)
    size = (kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"])  # the position embedding fixes it
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, input_size=size, num_classes=kwargs["num_classes"])
    return build_model_with_cfg(MRLAVisionTransformer, "mrla_vit", pretrained, pretrained_cfg_overlay=overlay,
                                feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs)


DEIT_SIZES = {"tiny": dict(embed_dim=192, num_heads=3), "small": dict(embed_dim=384, num_heads=6),
              "base": dict(embed_dim=768, num_heads=12)}


def _deit(form: str, size: str, pretrained: bool, kwargs) -> MRLAVisionTransformer:
    """MRLA DeiT as the official ``deit_mrla{l,b}_{size}_patch16_224``: 12 blocks, MRLA in every one,
    16 channels per MRLA head, MRLA-base's memory reset every 4 blocks."""
    variant = f"mrla_{form}_deit_{size}_patch16_224"
    if pretrained:
        raise ValueError(f"{variant}: no pretrained weights are registered; load an official checkpoint "
                         "with mrla_nas.models.from_official_state_dict")
    args = dict(patch_size=16, depth=12, mrla=form, mrla_group_size=4, **DEIT_SIZES[size])
    kwargs = dict(args, **kwargs)
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(MRLAVisionTransformer, variant, pretrained,
                                feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs)


@register_model
def mrla_light_deit_tiny_patch16_224(pretrained=False, **kwargs) -> MRLAVisionTransformer:
    """MRLA-light DeiT-T (official ``deit_mrlal_tiny_patch16_224``)."""
    return _deit("light", "tiny", pretrained, kwargs)


@register_model
def mrla_base_deit_tiny_patch16_224(pretrained=False, **kwargs) -> MRLAVisionTransformer:
    """MRLA-base DeiT-T (official ``deit_mrlab_tiny_patch16_224``)."""
    return _deit("base", "tiny", pretrained, kwargs)


@register_model
def mrla_light_deit_small_patch16_224(pretrained=False, **kwargs) -> MRLAVisionTransformer:
    """MRLA-light DeiT-S (official ``deit_mrlal_small_patch16_224``)."""
    return _deit("light", "small", pretrained, kwargs)


@register_model
def mrla_base_deit_small_patch16_224(pretrained=False, **kwargs) -> MRLAVisionTransformer:
    """MRLA-base DeiT-S (official ``deit_mrlab_small_patch16_224``)."""
    return _deit("base", "small", pretrained, kwargs)


@register_model
def mrla_light_deit_base_patch16_224(pretrained=False, **kwargs) -> MRLAVisionTransformer:
    """MRLA-light DeiT-B (official ``deit_mrlal_base_patch16_224``)."""
    return _deit("light", "base", pretrained, kwargs)


@register_model
def mrla_base_deit_base_patch16_224(pretrained=False, **kwargs) -> MRLAVisionTransformer:
    """MRLA-base DeiT-B (official ``deit_mrlab_base_patch16_224``)."""
    return _deit("base", "base", pretrained, kwargs)


# What ``mrla_timm`` builds without ``arch=`` or ``model=``: timm's resnet50 wrapped with MRLA-light,
# the same network as mrla_light_resnet50, key for key.
DEFAULT_TIMM = {"backbone": "timm", "model": "resnet50", "stages": "light"}


@register_model
def mrla_timm(pretrained=False, arch=None, **kwargs) -> nn.Module:
    """MRLA in any staged timm CNN: from an ``arch=`` timm config, dict or YAML path (what ``mrla-nas
    export`` writes for a timm space), or from :func:`~mrla_nas.models.timm_mrla.mrla_timm_model`'s
    arguments (``model=``, ``mrla=``, ...); without either, MRLA-light on timm's resnet50. ``features_only=True`` gives timm's feature getter over the
    model's ``forward_intermediates`` (``out_indices`` as timm's).

    A warm start is the config's ``pretrained: FILE`` (a local checkpoint of the plain model); nothing
    is downloaded, so ``pretrained=True`` is refused."""
    if pretrained:
        raise ValueError("mrla_timm: nothing is downloaded; give the config's pretrained: FILE (a local checkpoint "
                         "of the plain timm model)")
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    if arch is None and "model" not in kwargs:  # timm's own ResNet-50 with MRLA-light: mrla_light_resnet50
        arch = DEFAULT_TIMM
    if arch is not None:
        arch = as_arch(arch)
        if arch.backbone != "timm":
            raise ValueError(f"mrla_timm: arch is a {arch.backbone} config; use timm.create_model("
                             f"'mrla_{'resnet' if arch.backbone == 'resnet' else 'vit'}', arch=...)")
        kwargs = dict(arch.model_kwargs(), **kwargs)
    net = mrla_timm_model(**kwargs)
    if features_only:
        n = len(net.feature_info)
        return FeatureGetterNet(net, out_indices=tuple(range(n)) if out_indices is None else out_indices)
    return net
