"""mrla-nas: where does multi-head recurrent layer attention (MRLA, ICLR 2023) pay off, and at what cost.

Importing the package registers the MRLA networks in timm:

>>> import mrla_nas, timm
>>> model = timm.create_model("mrla_light_resnet20", num_classes=10)
"""
from . import models  # noqa: F401  (registers the timm entrypoints)
from .arch import ArchConfig, ConfigError, StageConfig, load_arch
from .layers import MRLABase, MRLALight
from .models import MRLAResNet, build_model, from_official_state_dict

__version__ = "0.1.0"
__all__ = ["ArchConfig", "StageConfig", "ConfigError", "load_arch", "build_model", "MRLALight", "MRLABase",
           "MRLAResNet", "from_official_state_dict", "__version__"]
