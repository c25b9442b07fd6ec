"""What a training recipe may be, for a search's proxy and for a full training alike: its optimizers,
augmentations and validation splits, the smallest batch that trains, what ``crop_flip`` needs, and
which settings a full training takes from the search that ranked its network.

The space's schema checks a recipe by these rules and :mod:`mrla_nas.training` trains by them, so a
recipe that validates is one that trains.

>>> crop_padding(32), crop_padding(4)
(4, 1)
>>> recipe_label({"dataset": "fashion-mnist", "epochs": 2, "train_size": 3000, "resolution": 28, "seeds": 2})
'2 epochs on 3,000 fashion-mnist images at 28 px, 2 seeds'
"""
from __future__ import annotations

from ..errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
AUGMENTATIONS = ("none", "flip", "crop_flip")
VAL_SPLITS = ("train", "test")  # validation carved from the training split, or the dataset's test split
MIN_BATCH = 2  # BatchNorm trains on two samples or more: a smaller (last) batch is skipped

# Where and how a network trains (training/device.py applies them). ``auto``: CUDA where the process
# may use a GPU (inside a search: where Ray gave the trial a GPU share), else the CPU.
DEVICES = ("auto", "cpu", "cuda")
# fp32: no autocast. bf16/fp16: torch.autocast, fp16 with a gradient scaler (CUDA only: CPU autocast
# in fp16 is slow and unscaled fp16 gradients underflow). MRLA's attention scores stay float32.
PRECISIONS = ("fp32", "bf16", "fp16")
# proxy.channels_last: auto (channels_last on CUDA, the default layout on the CPU), true or false

# What a full training takes from the search that ranked the network, unless given: the optimizer
# and its settings with the batch size they were tuned for, and the augmentation (a ViT searched with
# AdamW is not trained with SGD at lr 0.1). Epochs and the training subset are a full training's own.
SEARCH_RECIPE = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "augmentation")


def crop_padding(resolution: int) -> int:
    """What ``crop_flip`` pads each side with (4 at 32 px), by reflection: it needs a larger image."""
    return max(1, resolution // 8)


def check_augmentation(kind: str, resolution: int, where: str) -> None:
    """ConfigError where the augmentation cannot run at this resolution (reflection needs pad < size)."""
    if kind == "crop_flip" and crop_padding(resolution) >= resolution:
        raise ConfigError(f"{where}={resolution}: augmentation 'crop_flip' pads {crop_padding(resolution)} px by "
                          f"reflection and needs images of at least {crop_padding(resolution) + 1} px; use 'flip' "
                          "or 'none' at this size")


def check_precision(precision: str, device: str, where: str, device_where: str) -> None:
    """ConfigError where ``precision`` cannot train on ``device`` (fp16 needs CUDA)."""
    if precision == "fp16" and device == "cpu":
        raise ConfigError(f"{where}='fp16': {device_where}={device!r} trains on the CPU, where fp16 is not "
                          "supported; allowed there: fp32, bf16 (or use a CUDA device)")


def recipe_label(proxy) -> str:
    """What an accuracy measured under this recipe means, in one phrase: every figure and table that
    shows proxy (or validated) accuracies names it, since a 2-epoch accuracy is not a trained one."""
    epochs, seeds = int(proxy["epochs"]), int(proxy.get("seeds", 1))
    return (f"{epochs} epoch{'s' if epochs != 1 else ''} on {int(proxy['train_size']):,} {proxy['dataset']} images "
            f"at {proxy['resolution']} px, {seeds} seed{'s' if seeds != 1 else ''}")
