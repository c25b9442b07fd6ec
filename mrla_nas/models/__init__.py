"""MRLA networks on timm backbones (torch): the blocks with an MRLA unit (``blocks.py``), the ResNet and
ViT built from them (``mrla_resnet.py``, ``mrla_vit.py``), the builder of a config (``build.py``), the
timm registrations (``registry.py``) and the converter of official checkpoints (``official.py``).
Imports :mod:`mrla_nas.arch` (configs) and :mod:`mrla_nas.layers` (the units); importing this package
registers the networks in timm.
"""
from . import registry  # noqa: F401  (registers the timm entrypoints)
from .blocks import MRLABasicBlock, MRLABottleneck
from .build import BUILDERS, as_arch, build_model
from .mrla_resnet import MRLAResNet, MRLAStage
from .mrla_vit import MRLABlocks, MRLAVisionTransformer, MRLAViTBlock
from .official import from_official_state_dict, official_to_mrla_nas_keys

__all__ = ["MRLAResNet", "MRLAStage", "MRLAVisionTransformer", "MRLAViTBlock", "MRLABlocks", "MRLABottleneck",
           "MRLABasicBlock", "BUILDERS", "build_model", "as_arch", "from_official_state_dict",
           "official_to_mrla_nas_keys"]
