"""MRLA vision transformers on timm's ``VisionTransformer``: the official DeiT-MRLA layout, with the
MRLA form chosen per group of blocks.

Everything but the blocks is timm's (patch embedding, tokens, position embedding, norms, head, init,
``forward_head``, ``features_only`` through ``forward_intermediates``). Each block is timm's ``Block``
with one MRLA unit after its attention and MLP, exactly where the official code puts it:

    o = x;  x = x + attn(norm1(x));  x = x + mlp(norm2(x))
    x = x + TokenMRLALight(x, o)                 # light, every block of a light group
    x = x + TokenMRLABase(x, memory)             # base: keys/values of the group's earlier blocks

Blocks are grouped (``mrla_group_size``, 4 in the official MRLA-base: blocks 0-3, 4-7, 8-11); a
group's form is none, light or base, and a base group's memory starts fresh at its first block.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import torch
from timm.layers import register_notrace_module
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ..arch import FORMS
from ..layers import TokenMRLABase, TokenMRLALight
from .mrla_resnet import call_block, mrla_specs
from .timm_internals import feature_take_indices


@register_notrace_module  # torch.fx keeps the block whole: its MRLA-base memory is not a tensor
class MRLAViTBlock(Block):
    """timm's ``Block`` + an MRLA unit (light or base; ``none``: the plain block). ``forward(x, memory)``
    returns ``(x, memory)``."""

    def __init__(self, *args, mrla_form: str = "none", mrla_heads: Optional[int] = None,
                 mrla_dim_per_head: Optional[int] = None, mrla_reduction: Optional[int] = None,
                 mrla_starts_group: bool = False, mrla_alone: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if mrla_form not in FORMS:
            raise ValueError(f"mrla_form={mrla_form!r}; allowed: {list(FORMS)}")
        self.mrla_form = mrla_form
        self.mrla_starts_group = mrla_starts_group
        dim = self.norm1.normalized_shape[0]
        if mrla_form == "none":
            self.mrla = None
            return
        unit = TokenMRLALight if mrla_form == "light" else TokenMRLABase
        self.mrla = unit(dim, heads=mrla_heads, dim_per_head=None if mrla_heads else mrla_dim_per_head,
                         reduction=mrla_reduction)
        if mrla_form == "base" and mrla_starts_group:
            self.mrla.as_first_block(alone=mrla_alone)

    def forward(self, x: torch.Tensor, memory=None):
        if self.mrla is None:
            return super().forward(x), memory
        o = x
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        if self.mrla_form == "light":
            return x + self.mrla(x, o), None
        out, memory = self.mrla(x, None if self.mrla_starts_group else memory)
        return x + out, memory


@register_notrace_module
class MRLABlocks(nn.ModuleList):
    """The blocks, passing each MRLA-base group's memory along (state_dict keys stay ``blocks.N.*``)."""

    def __init__(self, blocks):
        super().__init__(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        memory = None
        for block in self:
            x, memory = self.run(block, x, memory)
        return x

    def run(self, block, x, memory):
        return call_block(block, x, memory, self.grad_checkpointing)


def group_specs(mrla: Any, groups: int) -> List[Dict[str, Any]]:
    """One spec per group: a form name or a dict with form, heads / dim_per_head, reduction."""
    return mrla_specs(mrla, groups, ("form", "heads", "dim_per_head", "reduction"), "group")


class MRLAVisionTransformer(VisionTransformer):
    """A timm ``VisionTransformer`` with MRLA-light or MRLA-base per group of blocks.

    Args:
        mrla: one spec for every group or one per group; a spec is a form name or a dict with
            ``form``, ``heads`` or ``dim_per_head`` (default: the DeiTs' 16 channels per head),
            ``reduction`` (None: the paper's Conv1d Q/K projection).
        mrla_group_size: blocks per group (4: the official MRLA-base's memory reset).
        other arguments: timm's ``VisionTransformer`` (img_size, patch_size, embed_dim, depth,
            num_heads, num_classes, in_chans, ...); a class token and a square patch grid are required.

    >>> model = MRLAVisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2,
    ...                               mrla=["light", "base"], mrla_group_size=2, num_classes=10)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, mrla: Any = "light", mrla_group_size: int = 4, depth: int = 12, **kwargs):
        if not isinstance(mrla_group_size, int) or mrla_group_size < 1:
            raise ValueError(f"mrla_group_size={mrla_group_size!r}: expected a positive integer")
        if kwargs.get("class_token", True) is False or kwargs.get("reg_tokens", 0):
            raise ValueError("MRLA ViTs need exactly one class token (the unit passes it through) and no reg tokens")
        groups = -(-depth // mrla_group_size)
        self.mrla_specs = group_specs(mrla, groups)
        self.mrla_group_size = mrla_group_size
        specs, size = self.mrla_specs, mrla_group_size

        def block_fn(*args, depth: int = 0, **kw):  # timm passes each block its index as `depth`
            spec = specs[depth // size]
            last_of_group = min(depth - depth % size + size, n_blocks) - 1
            return MRLAViTBlock(*args, depth=depth, mrla_form=spec["form"], mrla_heads=spec.get("heads"),
                                mrla_dim_per_head=spec.get("dim_per_head"), mrla_reduction=spec.get("reduction"),
                                mrla_starts_group=depth % size == 0, mrla_alone=depth % size == 0 and
                                depth == last_of_group, **kw)

        n_blocks = depth
        super().__init__(depth=depth, block_fn=block_fn, **kwargs)
        self.blocks = MRLABlocks(self.blocks)
        grid = self.patch_embed.grid_size
        if grid[0] != grid[1] or self.num_prefix_tokens != 1:
            raise ValueError(f"MRLA ViTs need a square patch grid and one class token (grid {grid})")

    def mrla_blocks(self) -> List[nn.Module]:
        return [b for b in self.blocks if b.mrla is not None]

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        self.blocks.grad_checkpointing = enable

    # No attention-mask arguments (timm's ViT has them for NaFlex): MRLA attends over the whole
    # patch grid, so a mask could not apply to it; torch.fx then traces ``x`` alone.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        return self.norm(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False,
                              output_dict: bool = False, attn_mask: Optional[torch.Tensor] = None,
                              is_causal: bool = False):
        """timm's ViT ``forward_intermediates`` (same arguments and outputs); the blocks pass their
        MRLA-base memory along."""
        if attn_mask is not None or is_causal:
            raise ValueError("MRLA ViTs take no attention mask: MRLA attends over the patch grid")
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt={output_fmt!r}: allowed 'NCHW', 'NLC'")
        take, max_index = feature_take_indices(len(self.blocks), indices)
        b, _, height, width = x.shape
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        blocks = self.blocks[:max_index + 1] if stop_early else self.blocks
        inter, memory = [], None
        for i, blk in enumerate(blocks):
            x, memory = self.blocks.run(blk, x, memory)
            if i in take:
                inter.append(self.norm(x) if norm else x)
        prefix = [y[:, :self.num_prefix_tokens] for y in inter]
        inter = [y[:, self.num_prefix_tokens:] for y in inter]
        if output_fmt == "NCHW":
            h, w = self.patch_embed.dynamic_feat_size((height, width))
            inter = [y.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous() for y in inter]
        if output_dict:
            out = {"image_intermediates": inter}
            if return_prefix_tokens:
                out["image_intermediates_prefix"] = prefix
            if not intermediates_only:
                out["image_features"] = self.norm(x)
            return out
        if return_prefix_tokens:
            inter = list(zip(inter, prefix))
        return inter if intermediates_only else (self.norm(x), inter)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        take = super().prune_intermediate_layers(indices, prune_norm, prune_head)
        if not isinstance(self.blocks, MRLABlocks):  # timm slices the container
            self.blocks = MRLABlocks(self.blocks)
        return take
