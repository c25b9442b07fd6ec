"""ImageFolder at ImageNet scale: an index of the files (paths and labels, nothing decoded), and a
decoded cache of exactly the images a proxy subset uses.

A proxy trains on a few thousand images of a split that may hold millions. The subsets are carved
from the index's labels (:func:`~mrla_nas.training.data.stratified_split`), and each subset is decoded
once per (dataset, split, subset, resolution) into a uint8 array on disk ([N, 3, R, R], NumPy's
``.npy``). Every trial, seed and ``validate`` of every run then maps it through the page cache
(copy-on-write: the workers share its pages) instead of decoding again.

An entry's name is a hash of what it holds (the folder, the resolution and each chosen file's path,
label, size and mtime), so a changed, added or removed file makes another entry, and a stale one is
never read. Its ``.json`` beside it records the shape and a CRC-32 of the pixels, checked on every
open: a damaged entry (truncated, overwritten, half-written by a killed build) is rebuilt, never
read. A file lock serialises builders of one entry (two trials, two searches). The cache lives in
``$MRLA_NAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mrla-nas``, else ``~/.cache/mrla-nas``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from .arrays import ArrayDataset, DatasetError, imagefolder_root

FORMAT = 1  # bump when what an entry holds changes (the decode, the layout)


def cache_dir() -> Path:
    """Where decoded subsets live (see the module's docstring)."""
    explicit = os.environ.get("MRLA_NAS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mrla-nas"


@dataclass(frozen=True)
class FolderIndex:
    """The files of one ImageFolder split: ``samples[i] = (path, class index)``; nothing decoded."""

    root: str
    samples: Tuple[Tuple[str, int], ...]
    classes: Tuple[str, ...]

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)


def index_imagefolder(folder: str, split: str = "train") -> FolderIndex:
    """The index of ``folder/SPLIT/CLASS/*`` (``val/`` for the test split), as torchvision's
    ImageFolder lists it (its classes, extensions and order)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = imagefolder_root(folder, split)
    try:
        classes, class_to_idx = find_classes(root)
        samples = make_dataset(root, class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:  # no class folders, or none with an image file
        raise DatasetError(f"proxy.path={folder!r}: {str(e).splitlines()[0]}; expected {root}/CLASS/*.jpg") from None
    return FolderIndex(os.path.realpath(root), tuple(samples), tuple(classes))


@functools.lru_cache(maxsize=16)
def _transform(resolution: int):
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.Resize(resolution, antialias=True), v2.CenterCrop(resolution)])


def decode(path: str, resolution: int) -> torch.Tensor:
    """One image as uint8 [3, R, R]: RGB (grey, CMYK, RGBA converted, as ImageFolder's loader does),
    the shorter side resized to R (antialiased), centre-cropped."""
    from torchvision.datasets.folder import default_loader

    try:
        return _transform(resolution)(default_loader(path))
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for a damaged or foreign file
        raise DatasetError(f"{path}: cannot be read as an image ({type(e).__name__}: {e})") from None


def _entry_key(index: FolderIndex, positions: Sequence[int], resolution: int) -> str:
    entries = []
    for i in positions:
        path, label = index.samples[int(i)]
        try:
            st = os.stat(path)
        except OSError as e:
            raise DatasetError(f"{path}: cannot be read ({e.strerror})") from None
        entries.append((os.path.relpath(path, index.root), label, st.st_size, st.st_mtime_ns))
    text = json.dumps({"format": FORMAT, "root": index.root, "resolution": resolution, "files": entries},
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _crc(array: np.ndarray) -> int:
    crc = 0
    flat = array.reshape(-1)
    step = 1 << 26
    for s in range(0, flat.size, step):  # in slices: a memory map is read once, not copied whole
        crc = zlib.crc32(flat[s:s + step], crc)
    return crc


def _open_entry(data: Path, meta: Path, shape: Tuple[int, ...]):
    """The entry's pixels (a copy-on-write map), or (None, why) if it is missing or damaged."""
    if not data.exists() or not meta.exists():
        return None, None
    try:
        info = json.loads(meta.read_text())
        array = np.load(data, mmap_mode="c")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return None, f"{type(e).__name__}: {e}"
    if tuple(array.shape) != shape or array.dtype != np.uint8:
        return None, f"holds {array.dtype} {tuple(array.shape)}, expected uint8 {shape}"
    if not isinstance(info, dict) or info.get("crc32") != _crc(array):
        return None, "its pixels do not match their checksum"
    return array, None


def cached_subset(index: FolderIndex, positions: Sequence[int], resolution: int,
                  progress: bool = True) -> ArrayDataset:
    """The images ``index.samples[positions]`` at ``resolution``, decoded once and cached."""
    from filelock import FileLock

    positions = [int(i) for i in positions]
    shape = (len(positions), 3, resolution, resolution)
    folder = cache_dir() / "images"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"MRLA_NAS_CACHE_DIR: cannot create {folder} ({e.strerror}); set it to a writable "
                           "folder") from None
    key = _entry_key(index, positions, resolution)
    data, meta = folder / f"{key}.npy", folder / f"{key}.json"
    labels = torch.tensor([index.samples[i][1] for i in positions], dtype=torch.long)
    with FileLock(str(folder / f"{key}.lock")):
        array, damage = _open_entry(data, meta, shape)
        if array is None:
            if damage:
                print(f"mrla-nas: the decoded cache {data} is damaged ({damage}); decoding it again", file=sys.stderr)
            _build(index, positions, resolution, data, meta, progress)
            array, damage = _open_entry(data, meta, shape)
            if array is None:
                raise DatasetError(f"{data}: the decoded cache cannot be read back ({damage or 'missing'})")
    return ArrayDataset(torch.from_numpy(array), labels, len(index.classes))


def _build(index: FolderIndex, positions: List[int], resolution: int, data: Path, meta: Path,
           progress: bool) -> None:
    """Decode the subset into ``data`` (written under a temporary name and renamed: a killed build
    leaves no entry), its checksum into ``meta``, with a progress line every few seconds."""
    tmp = data.with_name(f".{data.stem}.{os.getpid()}.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(positions), 3, resolution, resolution))
    t0 = last = time.perf_counter()
    where = os.path.basename(index.root)
    try:
        for n, i in enumerate(positions):
            out[n] = decode(index.samples[i][0], resolution).numpy()
            now = time.perf_counter()
            if progress and now - last > 5:
                rate = (n + 1) / (now - t0)
                print(f"mrla-nas: decoding {len(positions):,} {where} images at {resolution} px for the cache: "
                      f"{n + 1:,} done, ~{(len(positions) - n - 1) / rate:.0f} s left", file=sys.stderr)
                last = now
        out.flush()
        crc = _crc(out)
        del out
        os.replace(tmp, data)
    finally:
        if tmp.exists():
            tmp.unlink()
    meta_tmp = meta.with_name(f".{meta.name}.{os.getpid()}")
    meta_tmp.write_text(json.dumps({"format": FORMAT, "root": index.root, "resolution": resolution,
                                    "images": len(positions), "crc32": crc}))
    os.replace(meta_tmp, meta)
    if progress:
        print(f"mrla-nas: decoded {len(positions):,} {where} images at {resolution} px in "
              f"{time.perf_counter() - t0:.1f} s -> {data}", file=sys.stderr)
