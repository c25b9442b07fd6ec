"""Architecture configs: one network of the search, as plain data (no torch).

A config is a backbone (a ResNet: :class:`ArchConfig`; a ViT: :class:`~mrla_nas.backbones.ViTConfig`)
plus one MRLA entry per stage or group of blocks (form, heads, reduction). It round-trips through
YAML/JSON with plain Python types and has a canonical key: configs that build the same network get
the same key. Each backbone lives in its own module of :mod:`mrla_nas.backbones`; this module reads
any of them.

>>> arch = arch_from_dict({"block": "basic", "layers": [3, 3, 3], "channels": [16, 32, 64],
...                        "stem": "small", "stages": ["light", "none", {"form": "base"}]})
>>> arch.summary()
'basic[3,3,3] L-B'
>>> arch_from_dict({"backbone": "vit", "embed_dim": 64, "depth": 4, "num_heads": 2, "patch_size": 4,
...                 "img_size": 28, "stages": ["base"]}).summary()
'vit[64x4,p4] B'
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from .backbones import FORMS, ArchConfig, NetworkConfig, StageConfig, ViTConfig, config_from_dict
from .backbones.resnet import BLOCKS, DEFAULT_STEM_WIDTH, LIMITS, MAX_FEATURE_MAP, MAX_PARAMS, STEMS
from .errors import ConfigError, did_you_mean, key_label, show
from .paper import paper_heads
from .yaml_io import load_yaml_file

__all__ = ["ArchConfig", "ViTConfig", "NetworkConfig", "StageConfig", "FORMS", "BLOCKS", "STEMS",
           "DEFAULT_STEM_WIDTH", "LIMITS", "MAX_PARAMS", "MAX_FEATURE_MAP", "ConfigError", "did_you_mean",
           "key_label", "show", "paper_heads", "arch_from_dict", "load_arch", "load_arch_document"]

arch_from_dict = config_from_dict  # any backbone's config from a mapping (ResNet when no `backbone:`)


def load_arch(path) -> NetworkConfig:
    """Read a config from a YAML or JSON file (an exported file with ``arch:`` works too); read as
    safely and boundedly as a search space (:mod:`mrla_nas.yaml_io`)."""
    data = load_yaml_file(path, "architecture file")  # YAML is a superset of JSON
    return arch_from_dict(data, where=str(path))


def load_arch_document(path) -> Tuple[NetworkConfig, Dict[str, Any]]:
    """A config and, for an exported file, its ``metrics`` (input shape, FLOPs...; {} otherwise)."""
    data = load_yaml_file(path, "architecture file")
    metrics = data.get("metrics") if isinstance(data, dict) and isinstance(data.get("arch"), dict) else None
    return arch_from_dict(data, where=str(path)), metrics if isinstance(metrics, dict) else {}
