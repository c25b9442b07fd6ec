"""The training loop every network goes through: one network, one recipe (SGD or AdamW with a cosine
schedule), deterministic under a seed (weights, batch order, augmentation). Shared by the proxy
training of the search (:mod:`~mrla_nas.training.proxy`) and by ``mrla-nas train``
(:mod:`~mrla_nas.training.full`); knows nothing of Ray or Optuna.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..arch import ArchConfig
from ..errors import ConfigError
from ..models.build import build_model
from ..space.recipe import MIN_BATCH, check_augmentation, crop_padding
from .batches import BatchReader
from .data import ArrayDataset
from .device import Placement, resolve


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


# Subsets above this many pixels (4 Mi: the shipped spaces' Fashion-MNIST subsets are below it) get
# their stats in slices of STATS_SLICE pixels: no float copy of a large subset, 4 MB of it at a time.
STREAMED_STATS_ABOVE = 1 << 22
STATS_SLICE = 1 << 19


def _channel_stats(images: torch.Tensor):
    """Per-channel mean and sd [1, C, 1, 1] of uint8 images scaled to [0, 1]. A large subset (a
    memory-mapped ImageFolder cache) in slices with exact integer sums, so no float copy of it is
    ever made; a small one as it always was (the shipped tables' exact arithmetic)."""
    if images.numel() <= STREAMED_STATS_ABOVE:
        x = images.float() / 255
        return x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros(images.shape[1], dtype=torch.float64)
    step = max(1, STATS_SLICE // max(1, images[0].numel()))
    for s in range(0, len(images), step):
        chunk = images[s:s + step].to(torch.int64)
        total += chunk.sum((0, 2, 3)).double()
        squares += (chunk * chunk).sum((0, 2, 3)).double()
    n = images.numel() // images.shape[1]
    mean = total / n
    var = (squares - n * mean * mean) / max(1, n - 1)
    view = (1, -1, 1, 1)
    return ((mean / 255).float().view(view), (var.clamp_min(0).sqrt() / 255).float().view(view))


class _Normalizer:
    """uint8 images -> float on the trainer's device, resized to the proxy resolution, normalised with
    the train subset's stats (computed on the CPU, as they always were)."""

    def __init__(self, train: ArrayDataset, resolution: int, placement: Optional[Placement] = None):
        self.placement = placement or resolve({"device": "cpu"})
        # a split read from its files gives its stats from a sample (training/streaming.py)
        sample = getattr(train.images, "stats_sample", None)
        mean, std = _channel_stats(sample() if sample is not None else train.images)
        self.mean, self.std = mean.to(self.placement.device), std.clamp_min(1e-3).to(self.placement.device)
        self.resolution = resolution

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = self.placement.to_device(images)
        x = (images.float() / 255 - self.mean) / self.std
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        return self.placement.images(x)


def _augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "crop_flip":  # pad 4 (at 32 px) and take a random crop of the original size, per batch
        h, w = x.shape[-2:]
        pad = crop_padding(h)
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
        x = x[..., i:i + h, j:j + w]
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)  # drawn on the CPU: the same on any device
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def _optimizer(model, proxy):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith("lambda_t") else decay).append(p)
    groups = [{"params": decay, "weight_decay": proxy["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if proxy["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=proxy["lr"])
    return torch.optim.SGD(groups, lr=proxy["lr"], momentum=proxy["momentum"], nesterov=proxy["momentum"] > 0)


@torch.no_grad()
def evaluate(model, data: ArrayDataset, norm: _Normalizer, batch_size: int, workers: int = 0):
    model.eval()
    placement = norm.placement
    correct, loss = 0, 0.0
    chunks = [torch.arange(s, min(s + batch_size, len(data))) for s in range(0, len(data), batch_size)]
    for images, labels in BatchReader(data, placement, workers, persistent=False)(chunks):
        x, y = norm(images), placement.to_device(labels)
        with placement.autocast():
            logits = model(x)
        logits = logits.float()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return correct / len(data), loss / len(data)


class Trainer:
    """One network, one recipe: epochs of SGD/AdamW with a cosine schedule, deterministic under a seed.

    Shared by the proxy training of the search and by ``mrla-nas train``; its state (model,
    optimizer, schedule, RNG, epoch) round-trips through ``torch.load(weights_only=True)``.
    """

    def __init__(self, arch: ArchConfig, recipe: dict, train: ArrayDataset, seed: int = 0,
                 placement: Optional[Placement] = None):
        train.check_fits(arch.in_chans, arch.num_classes)
        for key, value in (("batch_size", recipe["batch_size"]), ("train_size", len(train))):
            if value < MIN_BATCH:  # no batch would ever train: the "result" would be an untrained network
                raise ConfigError(f"{key}={value}: expected at least {MIN_BATCH} (BatchNorm trains on batches of "
                                  f"{MIN_BATCH} or more)")
        size = recipe.get("resolution") or int(train.images.shape[-1])  # what the network sees
        check_augmentation(recipe.get("augmentation", "none"), size, "resolution")
        torch.manual_seed(seed)
        self.recipe, self.train = recipe, train
        self.gen = torch.Generator().manual_seed(seed)
        self.placement = placement or resolve(recipe)
        self.model = self.placement.place(build_model(arch))
        self.forward = self.placement.compiled(self.model)
        self.scaler = self.placement.scaler()
        # torch's global RNG (dropout, drop-path) as this trainer left it: several trainers can then
        # take turns (the seeds of one trial, in lockstep) and each gets what it would alone
        self.rng_state = torch.get_rng_state()
        self.norm = _Normalizer(train, recipe["resolution"], self.placement)
        self.batches = BatchReader(train, self.placement, recipe.get("workers", 0))
        self.opt = _optimizer(self.model, recipe)
        steps = recipe["epochs"] * math.ceil(len(train) / recipe["batch_size"])
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=steps)
        self.epoch = 0

    def train_epoch(self) -> float:
        """One epoch; returns the mean training loss. Raises TrialDiverged on NaN/inf."""
        torch.set_rng_state(self.rng_state)
        try:
            return self._train_epoch()
        finally:
            self.rng_state = torch.get_rng_state()

    def _train_epoch(self) -> float:
        self.epoch += 1
        model, bs, placement = self.model, self.recipe["batch_size"], self.placement
        model.train()
        order = torch.randperm(len(self.train), generator=self.gen)
        chunks = [idx for idx in (order[s:s + bs] for s in range(0, len(self.train), bs)) if len(idx) >= MIN_BATCH]
        total = 0.0 if not placement.cuda else torch.zeros((), device=placement.device)
        for images, labels in self.batches(chunks):
            x = _augment(self.norm(images), self.recipe.get("augmentation", "none"), self.gen)
            y = placement.to_device(labels)
            with placement.autocast():
                logits = self.forward(x)
            loss = F.cross_entropy(logits.float(), y)
            if not placement.cuda and not torch.isfinite(loss):  # on CUDA: once per epoch, not a sync a step
                raise TrialDiverged(f"loss became {loss.item()} at epoch {self.epoch}")
            self.opt.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                self.opt.step()
            else:  # fp16: scaled gradients; a step with inf/NaN gradients is skipped and the scale lowered
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            self.sched.step()
            total += (loss.item() if not placement.cuda else loss.detach()) * len(labels)
        total = float(total)
        if not math.isfinite(total):
            raise TrialDiverged(f"loss became {total} at epoch {self.epoch}")
        return total / len(self.train)

    def evaluate(self, data: ArrayDataset):
        return evaluate(self.forward, data, self.norm, max(self.recipe["batch_size"], 256), self.recipe.get("workers", 0))

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict(), "generator": self.gen.get_state(), "epoch": self.epoch,
                 "rng": self.rng_state}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        if "rng" in state:
            self.rng_state = state["rng"]
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
