"""The backbones MRLA can sit in, one module each (timm's ResNet, timm's VisionTransformer), behind one
interface (:class:`~mrla_nas.backbones.base.Backbone`) that the config reader, the search space, the
builder and the CLI use; a third backbone is one new module that registers itself here."""
from .base import (FORMS, Backbone, NetworkConfig, StageConfig, backbone_names, config_from_dict, get_backbone,
                   register)
from .resnet import ArchConfig, ResNetBackbone
from .vit import ViTConfig, ViTBackbone

__all__ = ["FORMS", "Backbone", "NetworkConfig", "StageConfig", "ArchConfig", "ViTConfig", "ResNetBackbone",
           "ViTBackbone", "config_from_dict", "get_backbone", "backbone_names", "register"]
