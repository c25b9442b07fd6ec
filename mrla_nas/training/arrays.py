"""What every loader returns and raises: images as a uint8 array with their labels
(:class:`ArrayDataset`, in memory or memory-mapped), the errors of a dataset that is missing or not
what its format says, and where an ImageFolder split lives. Imported by :mod:`.data` (the loaders)
and :mod:`.image_cache` (the decoded ImageFolder subsets) alike.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError


class DatasetError(ConfigError):
    """A dataset file that is not what its format says (truncated, corrupt, foreign)."""


class DatasetMissing(DatasetError):
    """A dataset folder or file is not where the space says; the message says how to fix it."""


@dataclass
class ArrayDataset:
    """Images as uint8 [N, C, H, W] and int64 labels [N], in memory or memory-mapped (a decoded cache)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: int

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "ArrayDataset":
        idx = torch.as_tensor(index, dtype=torch.long)
        return ArrayDataset(self.images[idx], self.labels[idx], self.classes)

    def check_fits(self, in_chans: int, num_classes: int) -> None:
        """ConfigError unless a network with these input channels and classes can train on it."""
        check_fits(self.images.shape[1], self.classes, in_chans, num_classes)


def check_fits(channels: int, classes: int, in_chans: int, num_classes: int) -> None:
    if channels != in_chans:
        raise ConfigError(f"backbone.in_chans={in_chans}: the dataset has {channels} channels")
    if classes > num_classes:
        raise ConfigError(f"backbone.num_classes={num_classes}: the dataset has {classes} classes")


def imagefolder_root(folder: str, split: str) -> str:
    """An ImageFolder split's folder: ``ROOT/train``, or ``ROOT/val`` for the test split."""
    root = os.path.join(folder, split if split == "train" else "val")
    if not os.path.isdir(root):
        raise DatasetMissing(f"proxy.path={folder!r}: no {os.path.basename(root)}/ folder; expected "
                             f"{folder}/train/CLASS/*.jpg (and val/CLASS/*.jpg)")
    return root
