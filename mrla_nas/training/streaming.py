"""A full training's ImageFolder, read from the files: ``images[index]`` decodes those images only
(in the DataLoader's worker processes with ``--workers N``), so ``mrla-nas train`` on ImageNet holds
batches in memory, never the split. The proxy's subsets are small and read many times: they go
through the decoded cache instead (:mod:`~mrla_nas.training.image_cache`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .arrays import ArrayDataset
from .image_cache import FolderIndex, decode, index_imagefolder

STATS_SAMPLE = 5000  # images whose pixels give the normalisation stats (fixed seed), not the whole split


class FolderImages:
    """The images ``index.samples[positions]`` at ``resolution``, as a read-only uint8 array
    [N, 3, R, R] whose elements are decoded when indexed (an int, a slice or an index tensor)."""

    def __init__(self, index: FolderIndex, positions: Sequence[int], resolution: int):
        self.index, self.positions, self.resolution = index, np.asarray(positions, dtype=np.int64), resolution

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return (len(self.positions), 3, self.resolution, self.resolution)

    def __len__(self) -> int:
        return len(self.positions)

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __getitem__(self, item) -> torch.Tensor:
        if isinstance(item, int):
            return decode(self.index.samples[int(self.positions[item])][0], self.resolution)
        chosen = self.positions[item] if isinstance(item, slice) else self.positions[np.asarray(item)]
        return torch.stack([decode(self.index.samples[int(i)][0], self.resolution) for i in chosen]) if len(chosen) \
            else torch.empty((0, 3, self.resolution, self.resolution), dtype=torch.uint8)

    def stats_sample(self, seed: int = 0) -> torch.Tensor:
        """At most STATS_SAMPLE of the images (a seeded choice), decoded: what the trainer computes
        its normalisation from, instead of decoding the whole split once more."""
        n = len(self.positions)
        pick = np.sort(np.random.RandomState(seed).permutation(n)[:STATS_SAMPLE])
        return self[pick]


def streamed_split(folder: str, split: str, resolution: int, positions: Optional[Sequence[int]] = None) -> ArrayDataset:
    """An ImageFolder split (or its ``positions``), indexed now and decoded as it is read."""
    index = index_imagefolder(folder, split)
    chosen = range(len(index)) if positions is None else positions
    labels = index.labels[torch.as_tensor(np.asarray(chosen, dtype=np.int64))]
    return ArrayDataset(FolderImages(index, chosen, resolution), labels, len(index.classes))
