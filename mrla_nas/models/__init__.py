"""MRLA networks on timm backbones; importing this registers them in timm."""
from . import registry  # noqa: F401  (registers the timm entrypoints)
from .blocks import FORMS, MRLABasicBlock, MRLABottleneck
from .mrla_resnet import STEMS, MRLAResNet, MRLAStage
from .mrla_vit import MRLABlocks, MRLAVisionTransformer, MRLAViTBlock
from .registry import as_arch, build_model
from .official import from_official_state_dict, official_to_mrla_nas_keys

__all__ = ["MRLAResNet", "MRLAStage", "MRLAVisionTransformer", "MRLAViTBlock", "MRLABlocks", "MRLABottleneck", "MRLABasicBlock", "FORMS", "STEMS",
           "from_official_state_dict", "official_to_mrla_nas_keys", "build_model", "as_arch"]
