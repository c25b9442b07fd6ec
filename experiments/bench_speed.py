"""Forward+backward time of MRLA networks relative to their timm baselines on the CPU.

Interleaved rounds (each model timed once per round, in turn) so that machine noise hits all
models alike; medians over rounds. Train mode, SGD-free (only forward + backward).

    .venv/bin/python experiments/bench_speed.py --threads 2 --batch 8 --size 224 --rounds 15
    .venv/bin/python experiments/bench_speed.py --rounds 21 --models deit_tiny_patch16_224 \
        mrla_light_deit_tiny_patch16_224 mrla_base_deit_tiny_patch16_224 resnet50 mrla_light_resnet50 mrla_base_resnet50

Each MRLA model is compared with the last model without MRLA listed before it (its baseline).

Writes a JSON next to the printed table when --out is given.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time

import timm
import torch

import mrla_nas  # noqa: F401  (registers the MRLA models)
from mrla_nas.cost.flops import measure
from mrla_nas.layers.cpu_ops import plain_pytorch


def step_time(model, x, plain: bool = False) -> float:
    t0 = time.perf_counter()
    with plain_pytorch() if plain else contextlib.nullcontext():
        model(x).sum().backward()
    elapsed = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return elapsed


def make_model(name: str) -> torch.nn.Module:
    """``NAME`` or ``NAME:plain`` (the MRLA layers on their plain PyTorch path, without the C++ kernels)."""
    base, _, variant = name.partition(":")
    if variant not in ("", "plain"):
        raise SystemExit(f"model variant {variant!r}; allowed: 'plain'")
    return timm.create_model(base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "mrla_light_resnet50", "mrla_base_resnet50"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    models = {n: make_model(n).train().to(memory_format=fmt) for n in args.models}
    x = torch.randn(args.batch, 3, args.size, args.size).to(memory_format=fmt)
    for _ in range(args.warmup):
        for n, m in models.items():
            step_time(m, x, n.endswith(":plain"))
    times = {n: [] for n in models}
    for _ in range(args.rounds):
        for n, m in models.items():
            times[n].append(step_time(m, x, n.endswith(":plain")))

    # each model against its own baseline: the last model without MRLA listed before it
    rows, base = [], args.models[0]
    for n in models:
        if "mrla" not in n:
            base = n
        med, low = statistics.median(times[n]), min(times[n])
        flops = measure(models[n], (1, 3, args.size, args.size)).flops
        base_flops = measure(models[base], (1, 3, args.size, args.size)).flops
        ratios = [a / b for a, b in zip(times[n], times[base])]  # per round: the same moment for both
        rows.append(dict(model=n, baseline=base, median_s=round(med, 4), min_s=round(low, 4),
                         time_ratio=round(med / statistics.median(times[base]), 3),
                         time_ratio_min=round(low / min(times[base]), 3),
                         time_ratio_paired_median=round(statistics.median(ratios), 3),
                         flops_ratio=round(flops / base_flops, 4),
                         iqr_s=round(statistics.quantiles(times[n], n=4)[2] - statistics.quantiles(times[n], n=4)[0], 4)))
    print(f"{'model':34s} {'baseline':24s} {'median s':>9s} {'x time':>7s} {'x min':>6s} {'x paired':>8s} "
          f"{'x FLOPs':>8s}")
    for r in rows:
        print(f"{r['model']:34s} {r['baseline']:24s} {r['median_s']:9.4f} {r['time_ratio']:7.3f} "
              f"{r['time_ratio_min']:6.3f} {r['time_ratio_paired_median']:8.3f} {r['flops_ratio']:8.4f}")
    if args.out:
        meta = dict(vars(args), torch=torch.__version__, timm=timm.__version__, machine=platform.machine(),
                    processor=platform.processor(), cpu_count=torch.get_num_threads())
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, results=rows), f, indent=2)


if __name__ == "__main__":
    main()
