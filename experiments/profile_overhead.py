"""Where MRLA's extra time goes: per-operator CPU time of a model minus timm's ResNet-50.

    .venv/bin/python experiments/profile_overhead.py mrla_light_resnet50 --threads 2 --batch 8

Forward+backward in train mode, averaged over --iters profiled iterations, ops sorted by the
extra milliseconds per iteration they cost over the baseline.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import mrla_nas  # noqa: F401


def op_times(name: str, x: torch.Tensor, iters: int) -> dict:
    model = timm.create_model(name).train()
    return profile_step(lambda: model(x).sum().backward(), iters)


def profile_step(step, iters: int) -> dict:
    """Self CPU milliseconds per operator and call of ``step`` (two warm-up calls first)."""
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            step()
    out = defaultdict(float)
    for evt in prof.key_averages():
        out[evt.key] += evt.self_cpu_time_total / 1000 / iters  # ms per iteration
    return out


def print_extra(base: dict, model: dict, base_name: str, model_name: str, top: int) -> None:
    """The operators sorted by the extra milliseconds per iteration they cost over the baseline."""
    total_b, total_m = sum(base.values()), sum(model.values())
    print(f"{base_name}: {total_b:.0f} ms/iter   {model_name}: {total_m:.0f} ms/iter   "
          f"extra {total_m - total_b:+.0f} ms ({total_m / total_b:.3f}x, profiler time)")
    rows = sorted(((model.get(k, 0) - base.get(k, 0), k) for k in set(base) | set(model)), reverse=True)
    print(f"{'operator':44s} {'extra ms/iter':>14s} {'share':>7s}")
    for delta, k in rows[:top]:
        print(f"{k[:44]:44s} {delta:14.1f} {delta / max(total_m - total_b, 1e-9):7.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--baseline", default="resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.size, args.size)
    base = op_times(args.baseline, x, args.iters)
    model = op_times(args.model, x, args.iters)
    print_extra(base, model, args.baseline, args.model, args.top)

if __name__ == "__main__":
    main()
