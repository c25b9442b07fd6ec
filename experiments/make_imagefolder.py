"""A synthetic ImageFolder of JPEGs for experiments/bench_data_path.py (not committed: it is made in
a minute). Each class has its own colour and stripe frequency, with noise, so a network can learn it;
sizes vary like a photo collection's.

    .venv/bin/python experiments/make_imagefolder.py /tmp/imagefolder50k --images 50000 --classes 100
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def _write_class(args) -> int:
    root, split, c, n, seed = args
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, split, f"class{c:04d}")
    os.makedirs(folder, exist_ok=True)
    colour = rng.integers(0, 256, 3)
    freq = 2 + c % 13
    for i in range(n):
        h, w = int(rng.integers(100, 161)), int(rng.integers(120, 201))
        x = np.linspace(0, 2 * np.pi * freq, w)
        stripes = (np.sin(x)[None, :, None] * 60).astype(np.int16)
        img = np.clip(colour[None, None, :] + stripes + rng.integers(-50, 51, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i:06d}.jpg"), quality=90)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--images", type=int, default=50_000, help="training images in all")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--val-per-class", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    per_class = args.images // args.classes
    jobs = [(args.root, "train", c, per_class, c) for c in range(args.classes)]
    jobs += [(args.root, "val", c, args.val_per_class, 10_000 + c) for c in range(args.classes)]
    with ProcessPoolExecutor(args.jobs) as pool:
        total = sum(pool.map(_write_class, jobs))
    print(f"wrote {total:,} JPEGs under {args.root}")


if __name__ == "__main__":
    main()
