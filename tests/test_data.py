"""Local dataset readers and deterministic stratified proxy subsets."""
import pickle
import re

import numpy as np
import pytest
import torch

from conftest import DATA
from mrla_nas.training.data import (DatasetError, DatasetMissing, load_cifar10, load_dataset, load_imagefolder, proxy_datasets,
                           stratified_split)

from mrla_nas.errors import ConfigError

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


# ---- files that do not pair up, damaged images: one error naming the file, never wrong labels ------
def _idx(path, arr):
    import struct
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("labels,expected", [
    (np.arange(593) % 10, "600 images but 593 labels"),
    ((np.arange(2400) % 10).reshape(600, 2, 2), "labels of shape (600, 2, 2); expected one label per image"),
], ids=["fewer labels than images", "labels not one per image"])
def test_idx_images_and_labels_must_pair_up(labels, expected, tmp_path):
    _idx(tmp_path / "train-images-idx3-ubyte", np.zeros((600, 28, 28)))
    _idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DatasetError, match=re.escape(expected)):
        load_dataset("fashion-mnist", str(tmp_path))


@pytest.mark.parametrize("labels,expected", [([0, 1, 2], "4 images but 3 labels"),
                                             ([0, 1, 2, -1], "label -1; expected class indices in [0, 9]"),
                                             ([0, 1, 2, 10], "label 10; expected class indices in [0, 9]")])
def test_cifar10_batches_must_pair_up_with_valid_labels(labels, expected, tmp_path):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": labels}, f)
    with pytest.raises(DatasetError, match=re.escape(f"data_batch_1: {expected}")):
        load_cifar10(str(tmp_path), "train")


def test_imagefolder_takes_grey_and_rgba_images_and_names_a_damaged_one(tmp_path):
    from PIL import Image
    folder = tmp_path / "train" / "cat"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.zeros((20, 20, 4), dtype=np.uint8)).save(folder / "rgba.png")
    (folder / "notes.txt").write_text("not an image, not an image extension: skipped")
    assert load_imagefolder(str(tmp_path), "train", resolution=8).images.shape == (2, 3, 8, 8)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DatasetError, match=re.escape(f"{folder / 'broken.jpg'}: cannot be read as an image")):
        load_imagefolder(str(tmp_path), "train", resolution=8)


def test_an_imagefolder_without_class_folders_or_images_is_one_error(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="Couldn't find any class folder"):
        load_imagefolder(str(tmp_path), "train")
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="Found no valid file for the classes cat"):
        load_imagefolder(str(tmp_path), "train")


@pytest.mark.parametrize("fields,expected", [({"num_classes": 5}, "backbone.num_classes=5: the dataset has 10 classes"),
                                             ({"in_chans": 3}, "backbone.in_chans=3: the dataset has 1 channels")])
def test_a_search_whose_network_cannot_take_the_data_stops_before_any_trial(fields, expected, tmp_path, capsys):
    import yaml
    from mrla_nas.cli import main
    data = yaml.safe_load((DATA.parent.parent / "search_spaces" / "tiny.yaml").read_text())
    data["proxy"]["path"] = SLICE
    data["backbone"].update(fields)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(data))
    assert main(["search", str(space), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_an_imagefolder_search_checks_classes_and_channels_without_decoding(tmp_path):
    from mrla_nas.training.data import check_proxy_data
    for cls in ("a", "b", "c"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "x.jpg").write_bytes(b"never decoded here")
    proxy = {"dataset": "imagefolder", "path": str(tmp_path)}
    check_proxy_data(proxy, 0, [{"in_chans": 3, "num_classes": 3}])
    with pytest.raises(ConfigError, match="backbone.num_classes=2: the dataset has 3 classes"):
        check_proxy_data(proxy, 0, [{"in_chans": 3, "num_classes": 3}, {"in_chans": 3, "num_classes": 2}])
    with pytest.raises(ConfigError, match="backbone.in_chans=1: the dataset has 3 channels"):
        check_proxy_data(proxy, 0, [{"in_chans": 1, "num_classes": 10}])


def test_a_damaged_idx_file_is_one_error_and_only_its_announced_bytes_are_read(tmp_path):
    import gzip
    import struct
    from mrla_nas.training.data import read_idx
    good = gzip.open(DATA / "fmnist_slice" / "train-images-idx3-ubyte.gz").read()
    files = {"truncated.gz": good[:len(good) // 2], "padded.gz": good + b"x", "short": b"\0\0",
             "floats": struct.pack(">HBBI", 0, 0x0D, 1, 1) + b"\0" * 4,
             "absurd.gz": struct.pack(">HBB3I", 0, 8, 3, 100_000, 1000, 1000)}
    expected = {"truncated.gz": "truncated or padded IDX file (header says (1200, 28, 28), 470,392 bytes",
                "padded.gz": "more than 940,800 bytes", "short": "not an IDX file (only 2 bytes)",
                "floats": "not an unsigned-byte IDX file", "absurd.gz": "100,000,000,000 bytes), more than"}
    for name, data in files.items():
        path = tmp_path / name
        (gzip.open if name.endswith(".gz") else open)(path, "wb").write(data)
        with pytest.raises(DatasetError, match=re.escape(expected[name])):
            read_idx(str(path))
    # an announced count is all that is decompressed: a stream far longer than its header says stops there
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(struct.pack(">HBBI", 0, 8, 1, 10))
        for _ in range(64):
            f.write(b"\0" * (1 << 20))
    with pytest.raises(DatasetError, match="more than 10 bytes"):
        read_idx(str(bomb))
    plain = tmp_path / "plain"
    plain.write_bytes(good)
    assert (read_idx(str(plain)) == read_idx(str(DATA / "fmnist_slice" / "train-images-idx3-ubyte.gz"))).all()
