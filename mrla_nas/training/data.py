"""Datasets from local files (never downloaded) and deterministic stratified proxy subsets.

Formats: MNIST/Fashion-MNIST IDX files (``.gz`` or raw; Debian's ``dataset-fashion-mnist`` by
default), CIFAR-10 python batches (``cifar-10-batches-py``), and ImageFolder trees
(``ROOT/train/CLASS/*``). The search carves its training and validation subsets from the
*training* split only; the test split is for the final training of an exported architecture.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError
from ..space.datasets import DATASETS
from .arrays import ArrayDataset, DatasetError, DatasetMissing, check_fits, imagefolder_root

__all__ = ["ArrayDataset", "DatasetError", "DatasetMissing", "check_fits", "imagefolder_root", "load_dataset",
           "proxy_datasets", "stratified_split", "check_proxy_data"]
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _checked(images: np.ndarray, labels: np.ndarray, classes: int, where: str) -> ArrayDataset:
    """The images and labels of one split as a dataset, once they pair up: one label per image, each
    a class index in [0, classes). A mismatch would otherwise train on shifted or invalid labels."""
    if labels.ndim != 1:
        raise DatasetError(f"{where}: labels of shape {tuple(labels.shape)}; expected one label per image")
    if len(labels) != len(images):
        raise DatasetError(f"{where}: {len(images):,} images but {len(labels):,} labels")
    if len(labels) == 0:
        raise DatasetError(f"{where}: no images")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= classes:
        raise DatasetError(f"{where}: label {lo if lo < 0 else hi}; expected class indices in [0, {classes - 1}]")
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)),
                        classes)


MAX_IDX_BYTES = 1 << 34  # 16 GiB of pixels: beyond any MNIST-format set (MNIST8M: 6.4 GB); a sanity cap


def read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST format), gzipped or not, as a numpy array. The header is read first and
    then only the bytes it announces (one more to tell a padded file), so that a damaged or hostile
    file (a gzip bomb) is never decompressed whole."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise DatasetError(f"{path}: not an IDX file (only {len(head)} bytes)")
            zero, dtype_code, ndim = struct.unpack(">HBB", head)
            dims = f.read(4 * ndim) if zero == 0 and dtype_code == 0x08 and 1 <= ndim <= 4 else b""
            if len(dims) != 4 * ndim or not dims:
                raise DatasetError(f"{path}: not an unsigned-byte IDX file")
            shape = struct.unpack(f">{ndim}I", dims)
            size = int(np.prod(shape, dtype=np.int64))
            if size > MAX_IDX_BYTES:
                raise DatasetError(f"{path}: the header announces {shape} ({size:,} bytes), more than "
                                   f"{MAX_IDX_BYTES:,}")
            data = f.read(size + 1)
    except (OSError, EOFError) as e:  # a corrupt or truncated .gz is the user's file, not a bug
        raise DatasetError(f"{path}: cannot be read as an IDX file ({e})") from None
    if len(data) != size:
        raise DatasetError(f"{path}: truncated or padded IDX file (header says {shape}, "
                           f"{'more than ' if len(data) > size else ''}{min(len(data), size):,} bytes of data)")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR-10's python batches are pickles; unpickling may run code, so only what those files
    hold is allowed (dicts, lists, bytes and numpy arrays)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")


def _find(folder: str, stem: str, hint: str) -> str:
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise DatasetMissing(f"proxy.path={folder!r}: no {stem}[.gz] there; {hint}")


def load_idx(folder: str, split: str = "train", hint: str = DATASETS["fashion-mnist"].hint) -> ArrayDataset:
    images_name, labels_name = _IDX_FILES[split]
    images_path, labels_path = _find(folder, images_name, hint), _find(folder, labels_name, hint)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: images of shape {images.shape}; expected [N, H, W]")
    classes = int(labels.max()) + 1 if labels.size else 0
    return _checked(images.copy()[:, None], labels, classes, f"{images_path} and {os.path.basename(labels_path)}")


def load_cifar10(folder: str, split: str = "train") -> ArrayDataset:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    hint = DATASETS["cifar10"].hint
    xs, ys = [], []
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise DatasetMissing(f"proxy.path={folder!r}: no {name} there; {hint}")
        try:
            with open(path, "rb") as f:
                batch = _CifarUnpickler(f, encoding="bytes").load()  # the official CIFAR-10 python format
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
        _checked(xs[-1], ys[-1], 10, path)  # each batch pairs up by itself
    return _checked(np.concatenate(xs), np.concatenate(ys), 10, folder)


def load_imagefolder(folder: str, split: str = "train", resolution: int = 224) -> ArrayDataset:
    """An ImageFolder split (``ROOT/SPLIT/CLASS/*``), resized to ``resolution`` and held in memory:
    indexed and decoded by the same rules as the proxy's cached subsets (:mod:`.image_cache`)."""
    from .image_cache import decode, index_imagefolder

    index = index_imagefolder(folder, split)
    images = torch.stack([decode(path, resolution) for path, _ in index.samples])
    return ArrayDataset(images, index.labels, len(index.classes))


def load_dataset(name: str, folder: str, split: str = "train", resolution: int = 224) -> ArrayDataset:
    """One split of a local dataset by its space name (fashion-mnist, mnist, cifar10, imagefolder)."""
    if name not in DATASETS:
        raise ConfigError(f"proxy.dataset={name!r}: allowed: {', '.join(DATASETS)}")
    if not os.path.isdir(folder):
        raise DatasetMissing(f"proxy.path={folder!r}: folder does not exist; {DATASETS[name].hint}")
    if name in ("fashion-mnist", "mnist"):
        return load_idx(folder, split, DATASETS[name].hint)
    if name == "cifar10":
        return load_cifar10(folder, split)
    return load_imagefolder(folder, split, resolution)


def stratified_split(labels: torch.Tensor, train_size: int, val_size: int, seed: int,
                     val_seed: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Disjoint, class-stratified train/validation indices, the same for the same seeds.

    The validation subset is carved first and depends only on ``val_seed`` (default: ``seed``) and
    ``val_size``: recipes with other training sizes, and the seeds of a multi-seed proxy, are all
    scored on the same held-out images. The training subset comes from the remaining examples:
    with ``seed == val_seed`` the next ones of the same per-class permutation, otherwise a
    permutation of them seeded by ``seed``; a smaller ``train_size`` is a prefix of a larger one.
    Each class gets its share of both subsets (largest-remainder rounding).
    """
    val_seed = seed if val_seed is None else val_seed
    y = np.asarray(labels)
    n = len(y)
    if train_size + val_size > n:
        raise ConfigError(f"proxy.train_size + proxy.val_size = {train_size + val_size}: more than the "
                          f"{n} training examples available")
    classes, counts = np.unique(y, return_counts=True)
    rng_val = np.random.RandomState(val_seed)
    rng_train = np.random.RandomState(seed) if seed != val_seed else None

    def shares(total):
        exact = counts * total / n
        out = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - out), kind="stable")[: total - out.sum()]:
            out[i] += 1
        return out

    va, tr = shares(val_size), shares(train_size)
    train_idx, val_idx = [], []
    for c, nva, ntr in zip(classes, va, tr):
        members = rng_val.permutation(np.flatnonzero(y == c))
        val_idx.append(members[:nva])
        rest = members[nva:] if rng_train is None else rng_train.permutation(members[nva:])
        train_idx.append(rest[:ntr])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _imagefolder_subsets(proxy: dict, seed: int, val_seed: int, progress: bool):
    from .image_cache import cached_subset, index_imagefolder

    train = index_imagefolder(proxy["path"], "train")
    res = proxy.get("resolution", 224)
    if proxy.get("val_split", "train") == "test":
        test = index_imagefolder(proxy["path"], "test")
        if proxy["val_size"] > len(test):
            raise ConfigError(f"proxy.val_size={proxy['val_size']}: the test split has {len(test)} images")
        tr, _ = stratified_split(train.labels, proxy["train_size"], 0, seed)
        _, va = stratified_split(test.labels, 0, proxy["val_size"], val_seed)
        return cached_subset(train, tr, res, progress), cached_subset(test, va, res, progress)
    tr, va = stratified_split(train.labels, proxy["train_size"], proxy["val_size"], seed, val_seed)
    return cached_subset(train, tr, res, progress), cached_subset(train, va, res, progress)


def check_proxy_data(proxy: dict, seed: int, backbones) -> None:
    """Before a search: the proxy's subsets can be carved (sizes, files) and every backbone choice
    (mappings with ``in_chans`` and ``num_classes``) fits the data; else every trial would fail on
    it, one after another. An ImageFolder tree is not decoded here (it can be large; the workers
    read it): its images are RGB and its classes are its folders."""
    if proxy["dataset"] == "imagefolder":
        from torchvision.datasets.folder import find_classes

        root = imagefolder_root(proxy["path"], "train")
        try:
            channels, classes = 3, len(find_classes(root)[0])
        except FileNotFoundError as e:
            raise DatasetError(f"proxy.path={proxy['path']!r}: {str(e).splitlines()[0]}") from None
    else:
        train, _ = proxy_datasets(proxy, seed)
        channels, classes = train.images.shape[1], train.classes
    for bb in backbones:
        check_fits(channels, classes, bb["in_chans"], bb["num_classes"])


def proxy_datasets(proxy: dict, seed: int, val_seed: Optional[int] = None,
                   progress: bool = True) -> Tuple[ArrayDataset, ArrayDataset]:
    """The search's training and validation subsets for training seed ``seed``.

    Validation: carved from the training split by ``val_seed`` (default ``seed``), or, with
    ``proxy.val_split: test``, a stratified subset of ``val_size`` images of the test split (all of
    it when ``val_size`` is its size): a larger held-out set for measuring a proxy's fidelity.

    An ImageFolder is indexed, not decoded: only the subsets' images are, once, into the decoded
    cache (:mod:`~mrla_nas.training.image_cache`). The IDX and CIFAR-10 files are read whole (47 and
    178 MB of pixels at their own size, in well under a second); the subsets are carved from them.
    """
    val_seed = seed if val_seed is None else val_seed
    if proxy["dataset"] == "imagefolder":
        return _imagefolder_subsets(proxy, seed, val_seed, progress)
    full = load_dataset(proxy["dataset"], proxy["path"], "train", proxy.get("resolution", 224))
    if proxy.get("val_split", "train") == "test":
        test = load_dataset(proxy["dataset"], proxy["path"], "test", proxy.get("resolution", 224))
        if proxy["val_size"] > len(test):
            raise ConfigError(f"proxy.val_size={proxy['val_size']}: the test split has {len(test)} images")
        tr, _ = stratified_split(full.labels, proxy["train_size"], 0, seed)
        _, va = stratified_split(test.labels, 0, proxy["val_size"], val_seed)
        return full.subset(tr), test.subset(va)
    tr, va = stratified_split(full.labels, proxy["train_size"], proxy["val_size"], seed, val_seed)
    return full.subset(tr), full.subset(va)
