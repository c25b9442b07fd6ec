"""`mrla-nas train` on an ImageFolder reads its images from the files as batches are drawn: the
split is never decoded whole, the pixels are those of the whole-split loader, and DataLoader
workers train the same network."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mrla_nas.arch import ArchConfig
from mrla_nas.cli import main
from mrla_nas.training import image_cache
from mrla_nas.training.data import load_dataset
from mrla_nas.training.streaming import FolderImages, streamed_split


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 3)):
        for cls in ("a", "b"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)).save(
                    tmp_path / "data" / split / cls / f"{i}.jpg")
    return tmp_path / "data"


def test_indexed_images_decode_what_the_whole_split_loader_does(folder):
    streamed = streamed_split(str(folder), "train", 12)
    whole = load_dataset("imagefolder", str(folder), "train", 12)
    assert isinstance(streamed.images, FolderImages) and streamed.images.shape == whole.images.shape
    assert torch.equal(streamed.images[torch.tensor([3, 0, 19])], whole.images[torch.tensor([3, 0, 19])])
    assert torch.equal(streamed.images[2:5], whole.images[2:5]) and torch.equal(streamed.labels, whole.labels)


def _arch_file(tmp_path):
    arch = ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small", "in_chans": 3,
                                 "num_classes": 2, "stages": ["light"]})
    f = tmp_path / "best.yaml"
    f.write_text(yaml.safe_dump({"arch": arch.to_dict()}))
    return f


def test_train_on_an_imagefolder_decodes_only_what_it_reads(folder, tmp_path, monkeypatch):
    calls = []
    real = image_cache.decode
    monkeypatch.setattr(image_cache, "decode", lambda path, r: calls.append(path) or real(path, r))
    monkeypatch.setattr("mrla_nas.training.streaming.decode", image_cache.decode)
    cli = ["train", str(_arch_file(tmp_path)), "--dataset", "imagefolder", "--path", str(folder), "--resolution", "12",
           "--train-size", "8", "--batch-size", "4", "--epochs", "1", "--device", "cpu"]
    assert main(cli + ["--out", str(tmp_path / "w0")]) == 0
    # the stats sample (the 8 images), one epoch (8) and the test split (6): never the 20 of the split
    assert len(calls) == 8 + 8 + 6
    assert main(cli + ["--workers", "2", "--out", str(tmp_path / "w2")]) == 0
    r0, r2 = (json.loads((tmp_path / w / "result.json").read_text()) for w in ("w0", "w2"))
    assert r0["device"] == "cpu" and r0["history"][0]["train_loss"] == r2["history"][0]["train_loss"]
    assert r0["test_accuracy"] == r2["test_accuracy"] and r0["test_size"] == 6
