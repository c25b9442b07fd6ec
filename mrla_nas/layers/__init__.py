"""MRLA units for CNN feature maps [B, C, H, W] and for token sequences [B, N, C]."""
from .heads import ChannelProjection, LayerQueryKeyValue, eca_kernel_size, resolve_heads
from .mrla_base import LayerMemory, MRLABase, weighted_layer_sum
from .mrla_light import MRLALight
from .tokens import TokenMRLABase, TokenMRLALight

__all__ = ["MRLALight", "MRLABase", "TokenMRLALight", "TokenMRLABase", "LayerMemory", "weighted_layer_sum",
           "ChannelProjection", "LayerQueryKeyValue", "eca_kernel_size", "resolve_heads"]
