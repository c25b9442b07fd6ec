"""Local dataset readers and deterministic stratified proxy subsets."""
import pickle

import numpy as np
import pytest
import torch

from conftest import DATA
from mrla_nas.data import (DatasetMissing, load_cifar10, load_dataset, load_imagefolder, proxy_datasets,
                           stratified_split)

SLICE = str(DATA / "fmnist_slice")


def test_idx_slice_reads_real_images():
    train = load_dataset("fashion-mnist", SLICE, "train")
    test = load_dataset("fashion-mnist", SLICE, "test")
    assert train.images.shape == (1200, 1, 28, 28) and train.images.dtype == torch.uint8
    assert len(test) == 300 and train.classes == 10
    assert torch.bincount(train.labels).tolist() == [120] * 10
    assert train.images.float().std() > 50  # real pictures, not zeros


def test_stratified_split_is_disjoint_balanced_and_deterministic():
    labels = torch.arange(10).repeat_interleave(100)
    tr, va = stratified_split(labels, 300, 100, seed=3)
    assert len(tr) == 300 and len(va) == 100 and not set(tr) & set(va)
    assert np.bincount(labels[tr].numpy()).tolist() == [30] * 10
    tr2, va2 = stratified_split(labels, 300, 100, seed=3)
    assert (tr == tr2).all() and (va == va2).all()
    assert not (stratified_split(labels, 300, 100, seed=4)[0] == tr).all()


def test_stratified_split_uneven_classes_and_too_large():
    labels = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)
    tr, va = stratified_split(labels, 10, 5, seed=0)
    assert np.bincount(labels[tr].numpy()).tolist() == [7, 2, 1]
    with pytest.raises(ValueError, match="proxy.train_size \\+ proxy.val_size = 101"):
        stratified_split(labels, 100, 1, seed=0)


def test_proxy_datasets_come_from_the_training_split():
    proxy = dict(dataset="fashion-mnist", path=SLICE, train_size=500, val_size=200, resolution=28)
    tr, va = proxy_datasets(proxy, seed=0)
    assert len(tr) == 500 and len(va) == 200
    full = load_dataset("fashion-mnist", SLICE, "train")
    rows = {bytes(x.numpy()) for x in full.images}
    assert all(bytes(x.numpy()) in rows for x in va.images[:20])


def test_cifar10_python_batches(tmp_path):
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": rng.randint(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, f)
    ds = load_cifar10(str(tmp_path), "train")
    assert ds.images.shape == (20, 3, 32, 32) and ds.classes == 10
    assert len(load_cifar10(str(tmp_path), "test")) == 4


def test_imagefolder(tmp_path):
    from PIL import Image
    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((40, 50, 3), i * 40, dtype=np.uint8)).save(tmp_path / "train" / cls / f"{i}.png")
    ds = load_imagefolder(str(tmp_path), "train", resolution=16)
    assert ds.images.shape == (6, 3, 16, 16) and ds.classes == 2


def test_missing_data_says_how_to_fix(tmp_path):
    with pytest.raises(DatasetMissing, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion-mnist", str(tmp_path / "nope"))
    with pytest.raises(DatasetMissing, match="train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", str(tmp_path))
    with pytest.raises(DatasetMissing, match="cifar-10-batches-py"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(DatasetMissing, match="train/CLASS"):
        load_dataset("imagefolder", str(tmp_path))
