"""Proxy training: deterministic under a seed, NaN loss reported as divergence."""
import pytest
import torch

from conftest import DATA
from mrla_nas import ArchConfig
from mrla_nas.training.trainer import TrialDiverged, _Normalizer
from mrla_nas.training.proxy import train_proxy

ARCH = ArchConfig.from_dict({"block": "basic", "layers": [1, 1], "channels": [8, 16], "stem": "small",
                             "in_chans": 1, "num_classes": 10, "stages": ["light", "base"]})
PROXY = dict(dataset="fashion-mnist", path=str(DATA / "fmnist_slice"), train_size=300, val_size=100, epochs=2,
             resolution=14, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
             augmentation="crop_flip", threads=1)


def test_same_seed_same_training():
    a = train_proxy(ARCH, PROXY, seed=3)
    b = train_proxy(ARCH, PROXY, seed=3)
    assert [h.val_accuracy for h in a.history] == [h.val_accuracy for h in b.history]
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    c = train_proxy(ARCH, PROXY, seed=4)
    assert [h.train_loss for h in c.history] != [h.train_loss for h in a.history]


def test_reports_every_epoch():
    seen = []
    result = train_proxy(ARCH, dict(PROXY, optimizer="adamw", lr=1e-3, augmentation="flip"), report=seen.append)
    assert [r.epoch for r in seen] == [1, 2] and result.accuracy == seen[-1].val_accuracy


def test_nan_loss_is_divergence(monkeypatch):
    monkeypatch.setattr(_Normalizer, "__call__", lambda self, images: torch.full(
        (images.shape[0], 1, 14, 14), float("nan")))
    with pytest.raises(TrialDiverged, match="loss became nan at epoch 1"):
        train_proxy(ARCH, PROXY)


def test_the_callers_thread_count_is_restored_even_when_training_fails(monkeypatch):
    torch.set_num_threads(1)
    seen = []
    train_proxy(ARCH, dict(PROXY, epochs=1, threads=2), report=lambda r: seen.append(torch.get_num_threads()))
    assert seen == [2] and torch.get_num_threads() == 1
    monkeypatch.setattr(_Normalizer, "__call__", lambda self, images: torch.full(
        (images.shape[0], 1, 14, 14), float("nan")))
    with pytest.raises(TrialDiverged):
        train_proxy(ARCH, dict(PROXY, threads=2))
    assert torch.get_num_threads() == 1
