"""An ImageFolder proxy decodes only its subsets, once, into a cache that is checked on every open:
the same pixels as decoding the whole split, nothing decoded twice, a changed file or a damaged
entry never read."""
import numpy as np
import pytest
import torch
from PIL import Image

from mrla_nas.training import image_cache
from mrla_nas.training.data import load_dataset, proxy_datasets, stratified_split
from mrla_nas.training.trainer import _channel_stats

CLASSES = ("cat", "dog", "owl")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MRLA_NAS_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for cls in CLASSES:
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / split / cls / f"{i}.png")
    return tmp_path / "data"


def _proxy(folder, **kw):
    return dict(dict(dataset="imagefolder", path=str(folder), train_size=9, val_size=6, resolution=16), **kw)


@pytest.fixture
def decodes(monkeypatch):
    calls = []
    real = image_cache.decode
    monkeypatch.setattr(image_cache, "decode", lambda path, r: calls.append(path) or real(path, r))
    return calls


def test_the_subsets_are_the_pixels_and_labels_of_decoding_the_whole_split(folder, decodes):
    train, val = proxy_datasets(_proxy(folder), seed=1)
    assert train.classes == 3 and len(decodes) == 9 + 6  # only the subsets' 15 of 36 images
    full = load_dataset("imagefolder", str(folder), "train", 16)  # the whole split (it decodes every image)
    tr, va = stratified_split(full.labels, 9, 6, 1)
    assert torch.equal(train.images, full.subset(tr).images) and torch.equal(train.labels, full.subset(tr).labels)
    assert torch.equal(val.images, full.subset(va).images) and torch.equal(val.labels, full.subset(va).labels)


def test_a_second_trial_decodes_nothing_and_seeds_share_the_validation_subset(folder, decodes):
    first = proxy_datasets(_proxy(folder), seed=0)
    decodes.clear()
    again = proxy_datasets(_proxy(folder), seed=0)
    assert decodes == [] and torch.equal(first[0].images, again[0].images)
    other_seed = proxy_datasets(_proxy(folder), seed=5, val_seed=0)  # the same validation subset: only training decoded
    assert len(decodes) == 9 and torch.equal(other_seed[1].images, first[1].images)
    decodes.clear()
    _, test = proxy_datasets(_proxy(folder, val_split="test", val_size=12), seed=0)
    assert len(test) == 12 and len(decodes) == 9 + 12  # the test split's own subset, and a training one without a carved-out validation


def test_a_changed_source_file_makes_a_new_entry(folder, decodes):
    train, _ = proxy_datasets(_proxy(folder), seed=0)
    index = image_cache.index_imagefolder(str(folder), "train")
    first = stratified_split(index.labels, 9, 6, 0)[0][0]
    path = index.samples[first][0]
    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(path)  # a new size (and mtime)
    decodes.clear()
    changed, _ = proxy_datasets(_proxy(folder), seed=0)
    assert len(decodes) == 9 and changed.images[0].sum() == 0 and not torch.equal(changed.images, train.images)


@pytest.mark.parametrize("damage", ["flip_pixel", "truncate", "garbage_meta"])
def test_a_damaged_entry_is_rebuilt_never_read(folder, decodes, damage, capsys):
    train, _ = proxy_datasets(_proxy(folder), seed=0)
    expected = train.images.clone()
    del train
    entries = sorted((image_cache.cache_dir() / "images").glob("*.npy"), key=lambda p: p.stat().st_size)
    target = entries[-1]  # the training subset's (9 images > 6)
    if damage == "flip_pixel":
        raw = bytearray(target.read_bytes())
        raw[-1] ^= 0xFF
        target.write_bytes(bytes(raw))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    else:
        target.with_suffix(".json").write_text("{not json")
    decodes.clear()
    again, _ = proxy_datasets(_proxy(folder), seed=0)
    assert len(decodes) == 9 and torch.equal(again.images, expected)
    assert "is damaged" in capsys.readouterr().err


def test_a_missing_or_damaged_image_is_one_error_naming_it(folder):
    from mrla_nas.training.data import DatasetError

    index = image_cache.index_imagefolder(str(folder), "train")
    victim = index.samples[stratified_split(index.labels, 9, 6, 0)[0][0]][0]
    with open(victim, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(DatasetError, match=rf"^{victim}: cannot be read as an image"):
        proxy_datasets(_proxy(folder), seed=0)
    assert not list((image_cache.cache_dir() / "images").glob("*.npy.*"))  # no half-written entry left


def test_streamed_channel_stats_match_the_in_memory_ones(monkeypatch):
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = _channel_stats(images)
    monkeypatch.setattr("mrla_nas.training.trainer.STREAMED_STATS_ABOVE", 200)
    monkeypatch.setattr("mrla_nas.training.trainer.STATS_SLICE", 400)  # 2 images per slice
    streamed_mean, streamed_std = _channel_stats(images)
    assert torch.allclose(mean, streamed_mean, atol=1e-6) and torch.allclose(std, streamed_std, atol=1e-6)
