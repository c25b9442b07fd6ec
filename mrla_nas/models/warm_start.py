"""A warm start: an MRLA network that begins as the user's pretrained plain network.

The plain model's weights (a local checkpoint; nothing is downloaded) are loaded into every weight
of the MRLA network but MRLA's own, after a key-by-key check against the network's plain part; then
each MRLA branch starts at zero, so the untrained MRLA network computes exactly what the pretrained
one does and learns its MRLA from there (:func:`start_as_identity`). One rule for every backbone that
offers ``pretrained`` (our ResNet, any timm CNN): MRLA's parameters are the ``mrla``, ``bn_mrla`` and
``mrla_scale`` children of the blocks that carry it.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Tuple

import torch
from timm.layers import LayerScale2d
from torch import nn

from ..errors import ConfigError, show

MRLA_CHILDREN = ("mrla", "bn_mrla", "mrla_scale")


def read_state_dict(path, where: str = "backbone.pretrained") -> Dict[str, torch.Tensor]:
    """A local checkpoint as a state dict: a plain state dict, or one under ``state_dict`` / ``model`` /
    ``state_dict_ema`` (timm's training checkpoints); ``module.`` prefixes (DataParallel) dropped."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ConfigError(f"{where}={show(str(path))}: no such file (a local checkpoint of the plain model)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same answer
        raise ConfigError(f"{where}={show(str(path))}: not a torch checkpoint ({type(e).__name__})") from None
    if isinstance(data, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not (isinstance(data, dict) and data and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                    for k, v in data.items())):
        raise ConfigError(f"{where}={show(str(path))}: not a state dict (expected a mapping of parameter names to "
                          "tensors, or one under 'state_dict' or 'model')")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in data.items()}


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def mrla_prefixes(net: nn.Module) -> Tuple[str, ...]:
    """The state_dict prefixes of MRLA's own modules in ``net``."""
    return tuple(f"{name}.{child}" if name else child for name, m in net.named_modules()
                 if hasattr(m, "mrla_form") for child in MRLA_CHILDREN if hasattr(m, child))


def classifier_prefixes(net: nn.Module) -> Tuple[str, ...]:
    """The classifier's module names (timm's ``get_classifier``): a checkpoint's head of another size is
    a new task's, left at its init."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    return tuple(n for n, m in net.named_modules() if head is not None and m is head and n)


def check_state_dict(state: Dict[str, torch.Tensor], own: Dict[str, Tuple[int, ...]], label: str,
                     classifier: Tuple[str, ...] = (), where: str = "backbone.pretrained") -> None:
    """A checkpoint that is ``label``'s plain model (``own``: its keys and shapes), or a one-line
    ConfigError naming the first key that is not, with both shapes."""
    for k in own:
        if k not in state and not _under(k, classifier):
            raise ConfigError(f"{where}: the checkpoint has no {k!r}, which {label} needs (a checkpoint of another "
                              "architecture?)")
    for k, v in state.items():
        if _under(k, classifier):
            continue
        if k not in own:
            raise ConfigError(f"{where}: the checkpoint's {k!r} is not in {label} (a checkpoint of another "
                              "architecture?)")
        if tuple(v.shape) != tuple(own[k]):
            raise ConfigError(f"{where}: {k!r} is {list(v.shape)} in the checkpoint but {list(own[k])} in {label} "
                              "(another width, depth or in_chans?)")


def start_as_identity(block: nn.Module) -> None:
    """The block's MRLA branch adds exactly zero until it has learnt something. Light: BN_mrla's scale
    at zero (its gradient is the normalised branch). Base: BN_mrla's scale at zero would not do, since
    the ReLU after it has no gradient at zero and the branch would stay dead; it ends instead in a
    per-channel scale at zero (timm's LayerScale2d, :func:`mrla_nas.models.blocks.mrla_branch`), whose
    gradient is the branch."""
    if block.mrla_form == "light":
        nn.init.zeros_(block.bn_mrla.weight)
    else:
        block.mrla_scale = LayerScale2d(block.bn_mrla.num_features, init_values=0.0)


def warm_start(net: nn.Module, path, label: str, where: str = "backbone.pretrained") -> nn.Module:
    """``net`` (an MRLA network) starting as the plain network of the checkpoint at ``path``."""
    state = read_state_dict(path, where)
    mrla = mrla_prefixes(net)
    own = {k: tuple(v.shape) for k, v in net.state_dict().items() if not _under(k, mrla)}
    check_state_dict(state, own, label, classifier_prefixes(net), where)
    net.load_state_dict({k: v for k, v in state.items() if k in own and tuple(v.shape) == own[k]}, strict=False)
    for m in list(net.modules()):
        if hasattr(m, "mrla_form") and hasattr(m, "bn_mrla"):
            start_as_identity(m)
    return net
