"""The training batches of one epoch, in the order the trainer drew: read in the trial's own process
(``workers: 0``, the CPU default) or by DataLoader worker processes (``workers: N``) that gather
each batch from the dataset's uint8 array (in memory, memory-mapped from the decoded cache of
:mod:`~mrla_nas.training.image_cache`, or decoded from the files by :mod:`~mrla_nas.training.streaming`)
into pinned memory, so that a GPU does not wait on the host.

The batch order and the augmentation stay in the trainer (on the batch, with its seeded generator):
the workers only gather, so any number of them trains the same network.
"""
from __future__ import annotations

from typing import Iterator, List, Tuple

import torch

from .data import ArrayDataset
from .device import Placement


class _Gather(torch.utils.data.Dataset):
    """``dataset[index_tensor]`` -> (images uint8 [n, C, H, W], labels [n]): a whole batch per fetch."""

    def __init__(self, data: ArrayDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.data.images[index], self.data.labels[index]


class _EpochOrder(torch.utils.data.Sampler):
    """The current epoch's batches of indices; the trainer sets them before each epoch (persistent
    workers keep running between epochs, and the sampler is iterated in the trainer's process)."""

    def __init__(self):
        self.chunks: List[torch.Tensor] = []

    def __iter__(self):
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


class BatchReader:
    """``reader(chunks)`` yields (images, labels) for each index tensor of ``chunks``."""

    def __init__(self, data: ArrayDataset, placement: Placement, workers: int = 0, persistent: bool = True):
        self.data, self.placement, self.workers = data, placement, int(workers)
        self._order = _EpochOrder()
        self._loader = None
        if self.workers:
            # batch_size=None: each sampled item is already a batch (an index tensor), so the workers
            # gather whole batches and collate nothing
            self._loader = torch.utils.data.DataLoader(
                _Gather(data), sampler=self._order, batch_size=None, num_workers=self.workers,
                pin_memory=placement.cuda, persistent_workers=persistent, prefetch_factor=4)

    def __call__(self, chunks: List[torch.Tensor]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        if self._loader is None:
            for idx in chunks:
                yield self.data.images[idx], self.data.labels[idx]
            return
        self._order.chunks = list(chunks)
        yield from self._loader
