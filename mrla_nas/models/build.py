"""The network of a config: one builder per backbone type, the one place where configs meet the model
classes (configs, in :mod:`mrla_nas.arch`, never import them)."""
from __future__ import annotations

import os
from typing import Callable, Dict

from torch import nn

from ..arch import NetworkConfig, arch_from_dict, load_arch
from .mrla_resnet import MRLAResNet
from .mrla_vit import MRLAVisionTransformer
from .timm_mrla import mrla_timm_model

# backbone type (``NetworkConfig.backbone``, the name it is registered under in mrla_nas.arch) -> the
# class built from its ``model_kwargs()``; a new backbone adds its config in mrla_nas.arch and its row here
BUILDERS: Dict[str, Callable[..., nn.Module]] = {"resnet": MRLAResNet, "vit": MRLAVisionTransformer,
                                                 "timm": mrla_timm_model}


def as_arch(arch) -> NetworkConfig:
    """A config (any backbone) from a config, a dict, or a YAML/JSON file path."""
    if isinstance(arch, NetworkConfig):
        return arch
    if isinstance(arch, dict):
        return arch_from_dict(arch)
    if isinstance(arch, (str, os.PathLike)):
        return load_arch(arch)
    raise TypeError(f"arch: expected an ArchConfig, a dict or a file path, got {type(arch).__name__}")


def build_model(arch, **overrides) -> nn.Module:
    """The network of a config (or dict, or YAML/JSON path) of any backbone; ``overrides`` replace
    model arguments.

    >>> net = build_model({"block": "basic", "layers": [1, 1], "channels": [16, 32], "stem": "small",
    ...                    "num_classes": 10, "stages": ["light", "base"]})
    >>> type(net).__name__
    'MRLAResNet'
    """
    arch = as_arch(arch)
    return BUILDERS[arch.backbone](**dict(arch.model_kwargs(), **overrides))
