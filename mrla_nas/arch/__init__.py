"""Architecture configs: one network of the search as plain data. No torch; imports only
:mod:`mrla_nas.errors` and :mod:`mrla_nas.yaml_io`.

A config is a backbone (a ResNet: :class:`ArchConfig`, ``resnet.py``; a ViT: :class:`ViTConfig`,
``vit.py``) plus one MRLA entry per stage or group of blocks (form, heads, reduction). It round-trips
through YAML/JSON with plain Python types and has a canonical key: configs that build the same
network get the same key. ``base.py`` holds what every backbone shares and the registry the rest of
the package finds them through; ``paper_defaults.py`` the official code's head and kernel rules;
``files.py`` reads a config file. Networks are built from configs by :mod:`mrla_nas.models`.

>>> arch = arch_from_dict({"block": "basic", "layers": [3, 3, 3], "channels": [16, 32, 64],
...                        "stem": "small", "stages": ["light", "none", {"form": "base"}]})
>>> arch.summary()
'basic[3,3,3] L-B'
>>> arch_from_dict({"backbone": "vit", "embed_dim": 64, "depth": 4, "num_heads": 2, "patch_size": 4,
...                 "img_size": 28, "stages": ["base"]}).summary()
'vit[64x4,p4] B'
"""
from .base import (FORMS, Backbone, NetworkConfig, StageConfig, backbone_names, config_from_dict, get_backbone,
                   register)
from .files import load_arch, load_arch_document
from .paper_defaults import paper_heads
from .resnet import ArchConfig, ResNetBackbone
from .timm_net import TimmBackbone, TimmConfig
from .vit import ViTBackbone, ViTConfig

arch_from_dict = config_from_dict  # any backbone's config from a mapping (ResNet when no `backbone:`)

__all__ = ["FORMS", "StageConfig", "NetworkConfig", "ArchConfig", "ViTConfig", "Backbone", "ResNetBackbone",
           "ViTBackbone", "TimmConfig", "TimmBackbone", "arch_from_dict", "config_from_dict", "load_arch", "load_arch_document", "get_backbone",
           "backbone_names", "register", "paper_heads"]
