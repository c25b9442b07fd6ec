"""Proxy training of one ArchConfig: a few epochs on a stratified subset, validation every epoch,
several seeds in lockstep. One torch thread by default (two trials share a 2-core machine better than
one 2-thread trial), restored afterwards. Knows nothing of Ray or Optuna: the caller passes
``report`` to receive each epoch's metrics.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch

from ..arch import ArchConfig
from ..settings import torch_threads
from .data import proxy_datasets
from .device import Placement, resolve
from .trainer import Trainer


@dataclass
class EpochReport:
    """One epoch: validation accuracy and loss, training loss, seconds. For several seeds: the means
    (``seconds`` the sum), with ``val_accuracy_sd`` (sample sd, 0 for one seed) and the per-seed values."""

    epoch: int
    val_accuracy: float
    val_loss: float
    train_loss: float
    seconds: float
    val_accuracy_sd: float = 0.0
    seeds: List[int] = field(default_factory=list)
    val_accuracies: List[float] = field(default_factory=list)
    val_losses: List[float] = field(default_factory=list)
    train_losses: List[float] = field(default_factory=list)
    seconds_per_seed: List[float] = field(default_factory=list)

    @classmethod
    def combine(cls, reports: List["EpochReport"], seeds: List[int]) -> "EpochReport":
        accs = [r.val_accuracy for r in reports]
        return cls(reports[0].epoch, statistics.fmean(accs), statistics.fmean(r.val_loss for r in reports),
                   statistics.fmean(r.train_loss for r in reports), sum(r.seconds for r in reports),
                   statistics.stdev(accs) if len(accs) > 1 else 0.0, list(seeds), accs,
                   [r.val_loss for r in reports], [r.train_loss for r in reports], [r.seconds for r in reports])


@dataclass
class ProxyResult:
    history: List[EpochReport] = field(default_factory=list)

    model: Optional[torch.nn.Module] = None
    placement: Optional[Placement] = None

    @property
    def accuracy(self) -> float:
        return self.history[-1].val_accuracy


def proxy_seeds(proxy: dict, seed: int) -> List[int]:
    """The training seeds of a proxy recipe: ``proxy.seeds`` of them, from the space's seed on."""
    return [seed + i for i in range(int(proxy.get("seeds", 1)))]


def train_proxy(arch: ArchConfig, proxy: dict, seed: int = 0, data=None,
                report: Optional[Callable[[EpochReport], None]] = None, val_seed: Optional[int] = None,
                seeds: Optional[List[int]] = None, placement: Optional[Placement] = None) -> ProxyResult:
    """Train ``arch`` with the space's proxy recipe; ``report`` is called after every epoch.

    With several ``seeds`` (default: one, ``seed``), one network per seed (its own training subset,
    initialisation and batch order) is trained in lockstep, epoch by epoch, and each epoch reports
    their mean with its sd: the per-seed results are exactly those of single-seed runs, and a
    scheduler sees the mean at every epoch. Validation is the same held-out set for every seed
    (carved by ``val_seed``, default ``seed``).

    Args:
        proxy: the space's ``proxy`` section (dataset, sizes, epochs, resolution, optimizer, ...).
        data: a function seed -> (train, val) ArrayDatasets, or one (train, val) pair for a single
            seed, to skip loading (the search loads them once per worker).
        placement: where and how to train (default: ``proxy``'s device, precision, ... as
            :func:`~mrla_nas.training.device.resolve` reads them outside a search).

    Raises TrialDiverged on a NaN/inf loss.
    """
    seeds = list(seeds) if seeds is not None else [seed]
    val_seed = seed if val_seed is None else val_seed

    def datasets(s):
        if callable(data):
            return data(s)
        if data is not None:
            return data
        return proxy_datasets(proxy, s, val_seed)

    placement = placement or resolve(proxy)
    with torch_threads(proxy.get("threads", 1)), placement.session():
        splits = [datasets(s) for s in seeds]
        trainers = [Trainer(arch, proxy, train, s, placement) for s, (train, _) in zip(seeds, splits)]
        result = ProxyResult(placement=placement)
        for _ in range(proxy["epochs"]):
            per_seed = []
            for trainer, (_, val) in zip(trainers, splits):
                t0 = time.perf_counter()
                train_loss = trainer.train_epoch()
                acc, vloss = trainer.evaluate(val)
                per_seed.append(EpochReport(trainer.epoch, acc, vloss, train_loss, time.perf_counter() - t0))
            rep = EpochReport.combine(per_seed, seeds)
            result.history.append(rep)
            if report is not None:
                report(rep)
    result.model = trainers[0].model
    return result
