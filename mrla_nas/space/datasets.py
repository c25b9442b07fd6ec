"""The datasets a space can name, in one table: what each fixes in a network (channels, classes), its
native resolution, where its files are by default, and what to do when they are missing. Nothing is
ever downloaded: every dataset is a local folder (:mod:`mrla_nas.training.data` reads them).

>>> DATASETS["fashion-mnist"].in_chans, DATASETS["cifar10"].resolution
(1, 32)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


@dataclass(frozen=True)
class Dataset:
    in_chans: int
    num_classes: int
    resolution: int               # its images' side (an ImageFolder's: the usual ImageNet crop)
    default_path: Optional[str]   # where it is when the space gives no proxy.path (None: it must give one)
    example_path: str             # what `mrla-nas space init` writes for proxy.path
    hint: str                     # how to get a missing folder right


DATASETS = {
    "fashion-mnist": Dataset(1, 10, 28, FASHION_MNIST_DIR, FASHION_MNIST_DIR,
                             "install Debian's dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist) "
                             "or point proxy.path at a folder of MNIST-format IDX files"),
    "mnist": Dataset(1, 10, 28, None, "~/data/mnist",
                     "point proxy.path at a folder with train-images-idx3-ubyte[.gz] and "
                     "train-labels-idx1-ubyte[.gz]"),
    "cifar10": Dataset(3, 10, 32, None, "~/data/cifar-10-batches-py",
                       "point proxy.path at the extracted cifar-10-batches-py folder (data_batch_1..5, test_batch)"),
    "imagefolder": Dataset(3, 1000, 224, None, "/data/imagenet",
                           "point proxy.path at a folder with train/CLASS/*.jpg (and val/CLASS/*.jpg)"),
}
