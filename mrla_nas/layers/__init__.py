"""MRLA units for CNN feature maps [B, C, H, W]."""
from .heads import ChannelProjection, LayerQueryKeyValue, eca_kernel_size, resolve_heads
from .mrla_base import LayerMemory, MRLABase, weighted_layer_sum
from .mrla_light import MRLALight

__all__ = ["MRLALight", "MRLABase", "LayerMemory", "weighted_layer_sum", "ChannelProjection",
           "LayerQueryKeyValue", "eca_kernel_size", "resolve_heads"]
