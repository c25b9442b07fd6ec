"""Make tests/data/fmnist_slice/ from Debian's dataset-fashion-mnist (MIT licence, Zalando Research).

    .venv/bin/python tests/data/make_fmnist_slice.py

A stratified 1,200-image slice of the training split (120 per class) and 300 of the test split,
written in the same IDX format, so that tests exercise the real reader on real images.
"""
import gzip
import os
import struct

import numpy as np

from mrla_nas.space.datasets import FASHION_MNIST_DIR
from mrla_nas.training.data import load_idx, stratified_split

OUT = os.path.join(os.path.dirname(__file__), "fmnist_slice")


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: byte-identical reruns
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def main():
    os.makedirs(OUT, exist_ok=True)
    for split, n, prefix in (("train", 1200, "train"), ("test", 300, "t10k")):
        ds = load_idx(FASHION_MNIST_DIR, split)
        idx, _ = stratified_split(ds.labels, n, 0, seed=0)
        write_idx(os.path.join(OUT, f"{prefix}-images-idx3-ubyte.gz"), ds.images[idx, 0].numpy())
        write_idx(os.path.join(OUT, f"{prefix}-labels-idx1-ubyte.gz"), ds.labels[idx].numpy().astype(np.uint8))


if __name__ == "__main__":
    main()
