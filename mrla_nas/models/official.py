"""Load checkpoints of the official MRLA code (joyfang1106/MRLA) into mrla-nas networks: ResNets,
and the DeiTs (timm's ViT key layout plus ``blocks.N.mrla.*``; the same renames apply).

The official ResNets name things differently from timm and from us:

=====================================  ========================================
official                               mrla-nas
=====================================  ========================================
``stages.{i}.{j}.*`` (MRLA-base)       ``layer{i+1}.{j}.*``
``*.mrla.mrla.Wq.weight`` (and Wk)     ``*.mrla.qkv.Wq.conv.weight``
``*.mrla.mrla.Wv.weight``              ``*.mrla.qkv.Wv.weight``
``*.mrla.lambda_t``, ``*.bn_mrla.*``   unchanged
stem ``conv1`` / ``conv1.{0,1,3,4,6}``  unchanged (timm's layout)
=====================================  ========================================

The architecture (block type, layers, widths, stem, classes, form) is read off the keys and shapes.
An MRLA-base stage's first block has no Wq here (it is never used there): the official key is dropped.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch

from ..arch.paper_defaults import official_heads
from ..errors import is_pos_int
from .mrla_resnet import MRLAResNet
from .mrla_vit import MRLAVisionTransformer

_RENAMES = [
    (re.compile(r"^stages\.(\d+)\."), lambda m: f"layer{int(m.group(1)) + 1}."),
    (re.compile(r"\.mrla\.mrla\.(Wq|Wk)\.weight$"), lambda m: f".mrla.qkv.{m.group(1)}.conv.weight"),
    (re.compile(r"\.mrla\.mrla\.Wv\.weight$"), lambda m: ".mrla.qkv.Wv.weight"),
]


_UNUSED_QK = re.compile(r"(^|\.)mrla\.qkv\.(Wq|Wk)\.")


def _unwrap(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"a checkpoint is a mapping of names to tensors (a state_dict); got a {type(checkpoint).__name__}")
    for key in ("state_dict", "model", "model_state_dict"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    out = OrderedDict()
    for k, v in checkpoint.items():
        if not isinstance(k, str):
            raise ValueError(f"checkpoint key {k!r} is a {type(k).__name__}, not a parameter name: not a state_dict")
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"checkpoint entry {k!r} is a {type(v).__name__}, not a tensor: not a state_dict")
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def official_to_mrla_nas_keys(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename an official state_dict's keys to mrla-nas's (``module.`` prefix and wrappers removed)."""
    out = OrderedDict()
    for k, v in _unwrap(state_dict).items():
        for pattern, repl in _RENAMES:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def _infer_arch(sd: Dict[str, torch.Tensor], form: Optional[str]) -> dict:
    if "conv1.weight" in sd:
        w = _tensor(sd, "conv1.weight", 4)
        if w.shape[-1] == 7:
            stem = dict(stem_type="7x7", stem_width=w.shape[0])
        elif w.shape[-1] == 3:
            stem = dict(stem_type="small", stem_width=w.shape[0])
        else:
            raise ValueError(f"cannot map stem conv1.weight of shape {tuple(w.shape)}: expected a 7x7 or 3x3 conv")
        in_chans = w.shape[1]
    elif "conv1.0.weight" in sd and "conv1.6.weight" in sd:
        stem = dict(stem_type="deep", stem_width=_tensor(sd, "conv1.0.weight", 4).shape[0])
        in_chans = sd["conv1.0.weight"].shape[1]
    else:
        raise ValueError("cannot find the stem: expected conv1.weight (7x7) or conv1.0/3/6.weight (deep stem)")

    blocks = {}
    for k in sd:
        m = re.match(r"^layer(\d+)\.(\d+)\.", k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not blocks:
        raise ValueError("no residual stages found (expected layerN.M.* or stages.N.M.* keys)")
    stage_ids = sorted(blocks)
    if stage_ids != list(range(1, len(stage_ids) + 1)):
        raise ValueError(f"stages {stage_ids} are not numbered consecutively")
    for i in stage_ids:
        if sorted(blocks[i]) != list(range(len(blocks[i]))):
            raise ValueError(f"stage {i}'s blocks {sorted(blocks[i])} are not numbered 0, 1, ...")
    layers = tuple(len(blocks[i]) for i in stage_ids)
    bottleneck = "layer1.0.conv3.weight" in sd
    channels = tuple(_tensor(sd, f"layer{i}.0.conv1.weight", 4).shape[0] for i in stage_ids)

    has_lambda = any(k.endswith(".mrla.lambda_t") for k in sd)
    has_mrla = any(".mrla." in k for k in sd)
    inferred = "light" if has_lambda else ("base" if has_mrla else "none")
    if form is None:
        form = inferred
    elif form != inferred:
        raise ValueError(f"form={form!r} but the checkpoint's keys are those of an MRLA-{inferred} network")
    mrla = []
    for i in stage_ids:
        spec = dict(form=form)
        wq = sd.get(f"layer{i}.0.mrla.qkv.Wq.conv.weight")
        if wq is not None:
            spec["kernel_size"] = int(wq.shape[-1])
        mrla.append(spec)
    return dict(block="bottleneck" if bottleneck else "basic", layers=layers, channels=channels, mrla=mrla,
                in_chans=in_chans, num_classes=_tensor(sd, "fc.weight", 2).shape[0], **stem)


def _vit_classes(sd: Dict[str, torch.Tensor]) -> int:
    # the official ViT with num_classes=0 has an Identity head (a feature extractor): no head.* keys
    return int(_tensor(sd, "head.weight", 2).shape[0]) if "head.weight" in sd or "head.bias" in sd else 0


def _tensor(sd: Dict[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    """``sd[key]``, which the architecture is read from: present, and with ``ndim`` dimensions."""
    if key not in sd:
        raise ValueError(f"the checkpoint has no {key}, which the architecture is read from")
    if sd[key].dim() != ndim:
        raise ValueError(f"checkpoint entry {key!r} has shape {list(sd[key].shape)}; expected {ndim} dimensions")
    return sd[key]


def _infer_vit(sd: Dict[str, torch.Tensor], form: Optional[str], num_heads: Optional[int],
               dim_mrla: Optional[int] = None) -> dict:
    """The DeiT-MRLA layout (``cls_token``, ``blocks.N.*``): width, depth, patch and image size, MLP
    ratio, classes and the form of each group of 4 blocks, read off the keys and shapes."""
    c = _tensor(sd, "cls_token", 3).shape[-1]
    blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(r"^blocks\.(\d+)\.", k)] if m})
    if not blocks or blocks != list(range(len(blocks))):
        raise ValueError("no consecutive blocks.N.* keys: not a DeiT checkpoint")
    proj = _tensor(sd, "patch_embed.proj.weight", 4)
    patch = int(proj.shape[-1])
    side = math.isqrt(max(_tensor(sd, "pos_embed", 3).shape[1] - 1, 0))
    if side * side != sd["pos_embed"].shape[1] - 1:
        raise ValueError(f"pos_embed of {sd['pos_embed'].shape[1]} tokens: not a class token + a square grid")
    if num_heads is None:
        if c % 64:
            raise ValueError(f"embed dim {c}: attention heads cannot be read off a checkpoint; give num_heads= "
                             "(DeiT-T/S/B use 64 channels per head)")
        num_heads = c // 64
    if not is_pos_int(num_heads) or c % num_heads:
        raise ValueError(f"num_heads={num_heads!r}: expected a positive integer dividing the embed dim {c}")

    def block_form(i):
        if f"blocks.{i}.mrla.lambda_t" in sd:
            return "light"
        return "base" if any(k.startswith(f"blocks.{i}.mrla.") for k in sd) else "none"

    forms = [block_form(i) for i in blocks]
    size = 4  # the official MRLA-base resets its memory every 4 blocks
    groups = [forms[g:g + size] for g in range(0, len(forms), size)]
    for g, members in enumerate(groups):
        if len(set(members)) != 1:
            raise ValueError(f"blocks {g * size}-{g * size + len(members) - 1} mix MRLA forms {members}")
    group_forms = [m[0] for m in groups]
    if form is not None and set(group_forms) != {form}:
        raise ValueError(f"form={form!r} but the checkpoint's blocks are {sorted(set(group_forms))}")
    heads = None
    if dim_mrla is not None:  # the official meaning: int(C / dim_mrla) heads (64 at 24 per head: 2 of 32)
        if not is_pos_int(dim_mrla):
            raise ValueError(f"dim_mrla={dim_mrla!r}: expected a positive integer (channels per MRLA head)")
        heads = official_heads(c, dim_mrla)
        if heads is None:
            raise ValueError(f"dim_mrla={dim_mrla} with embed dim {c}: int({c} / {dim_mrla}) heads do not divide "
                             f"the {c} channels (the official code cannot build it either); allowed: a dim_mrla "
                             f"of at most {c} whose head count divides {c}")
    return dict(embed_dim=c, depth=len(blocks), num_heads=num_heads, patch_size=patch, img_size=side * patch,
                in_chans=int(proj.shape[1]), num_classes=_vit_classes(sd),
                mlp_ratio=_tensor(sd, "blocks.0.mlp.fc1.weight", 2).shape[0] / c, qkv_bias="blocks.0.attn.qkv.bias" in sd,
                mrla=[dict(form=f, heads=heads) if heads and f != "none" else dict(form=f)
                      for f in group_forms], mrla_group_size=size)


def from_official_state_dict(state_dict: Mapping, form: Optional[str] = None, num_classes: Optional[int] = None,
                             num_heads: Optional[int] = None, dim_mrla: Optional[int] = None, **model_kwargs):
    """Build the mrla-nas network equivalent to an official MRLA checkpoint (a ResNet, or a DeiT:
    ``deit/deit_mrla_light.py`` / ``deit_mrla_base.py``) and load it.

    Args:
        state_dict: the official state_dict, a DDP one (``module.`` keys) or ``{"state_dict": ...}``.
        form: ``"light"`` or ``"base"``; inferred from the keys when None (and checked when given).
        num_classes: a different number of classes drops the checkpoint's classifier (a fresh head).
        num_heads: a DeiT's attention heads (not stored in the weights; default: 64 channels per
            head, as DeiT-T/S/B).
        dim_mrla: a DeiT's channels per MRLA head, the official models' ``dim_mrla`` (not stored in
            the weights either; default: 16, theirs), read as the official code does: ``int(C / dim_mrla)``
            heads. A ResNet's heads follow the same rule at 32 (light) / 16 (base) channels per head.
        model_kwargs: further :class:`MRLAResNet` / :class:`MRLAVisionTransformer` arguments.

    Example (with an official checkpoint, which mrla-nas never downloads)::

        sd = torch.load("resnet50_mrlal.pth.tar", weights_only=True)
        model = from_official_state_dict(sd, "light")
    """

    sd = official_to_mrla_nas_keys(state_dict)
    vit = "cls_token" in sd
    if not vit and (num_heads is not None or dim_mrla is not None):
        raise ValueError("num_heads and dim_mrla are a DeiT checkpoint's; a ResNet's MRLA heads follow the "
                         "paper's rule (mrla_nas.arch.paper_defaults)")
    arch = _infer_vit(sd, form, num_heads, dim_mrla) if vit else _infer_arch(sd, form)
    head = "head." if vit else "fc."
    if arch["num_classes"] == 0:  # the official ResNet's num_classes=0 is an empty Linear: timm's is none
        sd = OrderedDict((k, v) for k, v in sd.items() if not (k.startswith(head) and v.numel() == 0))
    if num_classes is not None and num_classes != arch["num_classes"]:
        arch["num_classes"] = num_classes
        sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith(head))
    model = (MRLAVisionTransformer if vit else MRLAResNet)(**dict(arch, **model_kwargs))
    # Official MRLA-base checkpoints hold Wq (and, in a stage or group of one block, Wk) in each
    # stage's (group's) first block, which never gets a gradient there (its softmax is over one
    # key); our first blocks have none. Those keys, and only those, are dropped.
    ours = model.state_dict()
    sd = OrderedDict((k, v) for k, v in sd.items() if k in ours or not _UNUSED_QK.search(k))
    for k, v in sd.items():  # one line naming the entry, not load_state_dict's multi-line RuntimeError
        if k in ours and v.shape != ours[k].shape:
            raise ValueError(f"checkpoint entry {k!r} has shape {list(v.shape)}; the network its other entries "
                             f"describe expects {list(ours[k].shape)}")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith(head) or f"{head}weight" in sd]
    problems = []
    if missing:
        problems.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unmapped {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if problems:
        raise ValueError(f"checkpoint does not map onto an MRLA {'ViT' if vit else 'ResNet'}: " + "; ".join(problems))
    return model
