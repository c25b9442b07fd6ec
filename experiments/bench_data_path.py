"""The data path of an ImageFolder proxy, before and after the decoded cache (issue 22, item 3):
time to a trial's first batch, the resident memory of a trial worker, and a second trial's data
set-up. Each trial is a fresh process (what a new Ray worker is), one torch thread.

    .venv/bin/python experiments/make_imagefolder.py /tmp/imagefolder50k         # 50,000 JPEGs, ~30 s
    .venv/bin/python experiments/bench_data_path.py /tmp/imagefolder50k --out experiments/results/data_path.json

"before": the split decoded whole (``load_dataset``), then the stratified subsets carved, as
``proxy_datasets`` did before the cache (the function is still the whole-split loader).
"after": ``proxy_datasets`` today: the split indexed, the subsets decoded into the cache once,
mapped from it by every later trial. Memory: the worker's RSS once its data is set up and read
(the trainer's normalisation stats read every training image), and its peak (``ru_maxrss``), less
its RSS before any data (imports and the model built), against the subsets' decoded size. The
first batch's time includes one forward and backward pass (its activations are not counted).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(args) -> dict:
    import psutil
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    from mrla_nas.arch import ArchConfig, StageConfig
    from mrla_nas.models.build import build_model
    from mrla_nas.training.data import load_dataset, proxy_datasets, stratified_split
    from mrla_nas.training.trainer import Trainer

    proxy = dict(dataset="imagefolder", path=args.root, train_size=args.train_size, val_size=args.val_size,
                 resolution=args.resolution, epochs=1, batch_size=64, optimizer="sgd", lr=0.1, momentum=0.9,
                 weight_decay=5e-4, augmentation="flip", threads=1)
    arch = ArchConfig(block="basic", layers=(3, 3, 3), channels=(16, 32, 64), stem="small", in_chans=3,
                      num_classes=100, stages=(StageConfig("light"),) * 3)
    build_model(arch)  # the model's memory is in the baseline, and so are the decoders' imports
    for module in ("torchvision.datasets", "PIL.Image"):  # the decoders both paths import
        importlib.import_module(module)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    if args.mode == "before":
        full = load_dataset("imagefolder", args.root, "train", args.resolution)
        tr, va = stratified_split(full.labels, args.train_size, args.val_size, 0)
        train, val = full.subset(tr), full.subset(va)
        del full
    else:
        train, val = proxy_datasets(proxy, 0, progress=False)
    t_setup = time.perf_counter() - t0
    trainer = Trainer(arch, proxy, train, 0)  # its normalisation stats read every training image
    val.images.sum()  # and the validation subset is read each epoch
    rss_data = proc.memory_info().rss - rss0
    peak_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    images, labels = next(trainer.batches([torch.arange(64)]))
    x = trainer.norm(images)
    torch.nn.functional.cross_entropy(trainer.model(x), labels).backward()
    t_first = time.perf_counter() - t0
    subset_bytes = (len(train) + len(val)) * 3 * args.resolution ** 2
    return {"mode": args.mode, "setup_s": t_setup, "first_batch_s": t_first,
            "rss_growth_mb": rss_data / 2 ** 20, "peak_growth_mb": peak_data / 2 ** 20,
            "subset_mb": subset_bytes / 2 ** 20}


def run(mode: str, args, cache: str) -> dict:
    cmd = [sys.executable, __file__, args.root, "--child", mode, "--train-size", str(args.train_size),
           "--val-size", str(args.val_size), "--resolution", str(args.resolution)]
    env = dict(os.environ, MRLA_NAS_CACHE_DIR=cache, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--val-size", type=int, default=500)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--child", dest="mode", choices=["before", "after"])
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    images = sum(len(files) for _, _, files in os.walk(os.path.join(args.root, "train")))
    with tempfile.TemporaryDirectory() as cache:
        rows = {"before, first trial": run("before", args, cache), "before, second trial": run("before", args, cache),
                "after, first trial (cold cache)": run("after", args, cache),
                "after, second trial": run("after", args, cache)}
    for name, r in rows.items():
        print(f"{name:34s} set-up {r['setup_s']:7.2f} s  first batch {r['first_batch_s']:7.2f} s  RSS +{r['rss_growth_mb']:7.1f} MB"
              f"  peak +{r['peak_growth_mb']:7.1f} MB  (subsets {r['subset_mb']:.1f} MB)")
    if args.out:
        Path(args.out).write_text(json.dumps({"images": images, "train_size": args.train_size, "val_size": args.val_size,
                                              "resolution": args.resolution, "machine": platform.processor() or platform.machine(),
                                              "cpus": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
