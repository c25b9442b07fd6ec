"""MRLA's cost where a search pays it: the training step of the default space's proxy networks.

    .venv/bin/python experiments/bench_proxy_speed.py --rounds 21 --out experiments/results/speed_proxy.json
    .venv/bin/python experiments/bench_proxy_speed.py --profile     # where the extra time goes
    .venv/bin/python experiments/bench_proxy_speed.py --train light --steps 100   # for an outside profiler
    .venv/bin/python experiments/bench_proxy_speed.py --kernels     # each C++ kernel's time in the step

The step the search runs (`mrla_nas.training.trainer.Trainer`): forward, cross-entropy, backward, the space's
optimizer step, at the space's batch size and resolution, one torch thread (a trial's setting).
Networks: the space's reference placements (no MRLA, light everywhere, base everywhere, paper
heads), and the MRLA ones again on the plain PyTorch path (`NAME:plain`, the C++ kernels off) as
the "before". Interleaved rounds (each network timed in turn within a round, `--steps` steps each),
medians, minima and per-round paired ratios against no MRLA.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))  # profile_overhead's helpers

from mrla_nas.cost.flops import measure  # noqa: E402
from mrla_nas.layers.cpu_ops import plain_pytorch  # noqa: E402
from mrla_nas.models import build_model  # noqa: E402
from mrla_nas.training.trainer import _optimizer  # noqa: E402  (the proxy's own optimizer set-up)
from mrla_nas.space import load_space  # noqa: E402


def timed_steps(model, opt, x, y, steps: int, plain: bool) -> float:
    t0 = time.perf_counter()
    with plain_pytorch() if plain else contextlib.nullcontext():
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return (time.perf_counter() - t0) / steps


def kernel_times(name: str, step, steps: int) -> None:
    """Wall time of every C++ kernel call in ``steps`` training steps (the extension wrapped where the
    autograd wrappers look it up), then each kernel again on the arguments of its last call alone."""
    from mrla_nas.kernels import cpu_kernels
    from mrla_nas.layers import cpu_ops, fused_base, fused_light, mrla_base

    ext, calls, last = cpu_kernels(), defaultdict(list), {}

    class Timed:
        def __getattr__(self, kernel):
            fn = getattr(ext, kernel)

            def timed(*a):
                t0 = time.perf_counter()
                out = fn(*a)
                key = (kernel, tuple(a[0].shape) if isinstance(a[0], torch.Tensor) else tuple(a[1][0].shape))
                calls[key].append(time.perf_counter() - t0)
                last[key] = (fn, a)
                return out
            return timed

    modules = (cpu_ops, fused_base, fused_light, mrla_base)
    for m in modules:
        m.cpu_kernels = lambda: Timed()
    try:
        step()
        calls.clear()
        for _ in range(steps):
            step()
    finally:
        for m in modules:
            m.cpu_kernels = cpu_kernels
    flush = torch.empty(2 ** 26)
    print(f"{name}: C++ kernels in the training step (medians of {steps} steps) and alone on the same maps")
    print(f"  {'kernel':22s} {'map':18s} {'calls':>5s} {'in step ms':>10s} {'alone warm':>10s} {'alone cold':>10s}")
    total = 0.0
    for key, ts in sorted(calls.items()):
        fn, a = last[key]
        alone = {}
        for state in ("warm", "cold"):
            runs = []
            for _ in range(15):
                flush.fill_(1.0) if state == "cold" else fn(*a)
                t0 = time.perf_counter()
                fn(*a)
                runs.append(time.perf_counter() - t0)
            alone[state] = 1000 * statistics.median(runs)
        per_step = len(ts) // steps
        total += 1000 * statistics.median(ts) * per_step
        print(f"  {key[0]:22s} {str(list(key[1])):18s} {per_step:5d} {1000 * statistics.median(ts):10.3f} "
              f"{alone['warm']:10.3f} {alone['cold']:10.3f}")
    print(f"  all kernels: {total:.1f} ms per step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "fmnist_resnet20.yaml"))
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=5, help="training steps per network and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true",
                    help="instead: where the extra time of light and base goes (torch profiler, ops against none)")
    ap.add_argument("--train", choices=["none", "light", "base", "light:plain", "base:plain"],
                    help="instead: only train this network for --steps steps after the warm-up (to run under an "
                         "outside profiler, experiments/perf_extra.py)")
    ap.add_argument("--kernels", action="store_true",
                    help="instead: each C++ kernel call's wall time inside the training step (no profiler), against "
                         "the same call on the same maps alone, warm and after a 256 MiB flush")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = load_space(args.space, check_paths=False)
    bb = space.backbone_combos()[0]
    shape = space.input_shape(bb)
    batch = space.proxy["batch_size"]
    x = torch.randn(batch, *shape[1:])
    y = torch.randint(0, 10, (batch,))
    nets = {}
    for placement in ("none", "light", "base"):
        arch = space.reference_config(placement, bb).canonical()
        for plain in ((False, True) if placement != "none" else (False,)):
            name = f"{placement}{':plain' if plain else ''}"
            model = build_model(arch).train()
            nets[name] = (model, _optimizer(model, space.proxy), plain, measure(model, shape).flops)
    if args.train:
        model, opt, plain, _f = nets[args.train]
        timed_steps(model, opt, x, y, args.warmup, plain)
        timed_steps(model, opt, x, y, args.steps, plain)
        return
    if args.kernels:
        for name in ("light", "base"):
            model, opt, plain, _f = nets[name]
            kernel_times(name, lambda: timed_steps(model, opt, x, y, 1, plain), args.steps * 4)
        return
    if args.profile:
        from profile_overhead import print_extra, profile_step

        def step(name):
            model, opt, plain, _f = nets[name]
            return lambda: timed_steps(model, opt, x, y, 1, plain)

        base = profile_step(step("none"), 5)
        for name in ("light", "base"):
            print_extra(base, profile_step(step(name), 5), "none", name, 12)
        return
    for _ in range(args.warmup):
        for model, opt, plain, _f in nets.values():
            timed_steps(model, opt, x, y, args.steps, plain)
    times = {n: [] for n in nets}
    for _ in range(args.rounds):
        for n, (model, opt, plain, _f) in nets.items():
            times[n].append(timed_steps(model, opt, x, y, args.steps, plain))
    rows = []
    for n, (_m, _o, _p, flops) in nets.items():
        ratios = [a / b for a, b in zip(times[n], times["none"])]
        rows.append(dict(network=n, median_ms=round(1000 * statistics.median(times[n]), 2),
                         min_ms=round(1000 * min(times[n]), 2),
                         time_ratio=round(statistics.median(times[n]) / statistics.median(times["none"]), 3),
                         time_ratio_min=round(min(times[n]) / min(times["none"]), 3),
                         time_ratio_paired_median=round(statistics.median(ratios), 3),
                         flops_ratio=round(flops / nets["none"][3], 4)))
    print(f"{'network':12s} {'median ms':>10s} {'min ms':>8s} {'x time':>7s} {'x min':>6s} {'x paired':>8s} {'x FLOPs':>8s}")
    for r in rows:
        print(f"{r['network']:12s} {r['median_ms']:10.2f} {r['min_ms']:8.2f} {r['time_ratio']:7.3f} "
              f"{r['time_ratio_min']:6.3f} {r['time_ratio_paired_median']:8.3f} {r['flops_ratio']:8.4f}")
    if args.out:
        meta = dict(vars(args), batch=batch, input=list(shape[1:]), torch=torch.__version__,
                    machine=platform.machine(), date=time.strftime("%Y-%m-%d"))
        Path(args.out).write_text(json.dumps(dict(meta=meta, results=rows), indent=2))


if __name__ == "__main__":
    main()
