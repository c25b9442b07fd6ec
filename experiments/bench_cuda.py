"""MRLA's cost on a GPU: the ResNet-50s and the proxy networks against their timm baselines, eager
(on CUDA the plain PyTorch path: the C++ kernels are CPU-only), channels-last and torch.compile.

The one prepared script of issue 13's GPU item, to run when the `device` tool lends a machine:

    python experiments/bench_cuda.py --out $OUT/speed_cuda.json            # on the GPU machine
    .venv/bin/python experiments/bench_cuda.py --device cpu --quick        # a smoke test here

(On the CPU, "eager" runs the C++ kernels and "compile" the plain path they step aside for; only
the CUDA figures answer the issue.)

Step timed: forward, cross-entropy, backward and an SGD step (the proxy networks: the space's own
optimizer), synchronised before and after. Each (mode, network) pair is timed in turn within a
round (interleaved, `--steps` steps each), medians and minima over `--rounds` rounds, ratios
against the family's baseline in the same mode (`resnet50`; the proxy network without MRLA).
torch.compile's first steps (its compilation) are timed apart and left out of the rounds. For
every MRLA network more than `--explain-above` times its baseline, the torch profiler's top
operators by device time (extra over the baseline) say where the time goes.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mrla_nas  # noqa: E402,F401  (registers the MRLA models with timm)
from mrla_nas.models import build_model  # noqa: E402
from mrla_nas.training.trainer import _optimizer  # noqa: E402  (the proxy's own optimizer set-up)
from mrla_nas.space import load_space  # noqa: E402

MODES = ("eager", "channels_last", "compile")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Net:
    """One network in one mode, with its optimizer and a fixed batch on the device."""

    def __init__(self, family: str, name: str, model, opt, x, y, mode: str, baseline: str):
        self.family, self.name, self.mode, self.baseline = family, name, mode, baseline
        if mode == "channels_last":
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        self.model, self.opt, self.x, self.y = model, opt, x, y
        self.forward = torch.compile(model) if mode == "compile" else model
        self.compile_s = None

    @property
    def label(self) -> str:
        return f"{self.name} [{self.mode}]"

    def steps(self, n: int) -> float:
        _sync(self.x.device)
        t0 = time.perf_counter()
        for _ in range(n):
            loss = F.cross_entropy(self.forward(self.x), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        _sync(self.x.device)
        return (time.perf_counter() - t0) / n


def _resnet50s(args, device, mode):
    names = ["resnet50", "mrla_light_resnet50", "mrla_base_resnet50"]
    x = torch.randn(args.resnet_batch, 3, args.resnet_size, args.resnet_size, device=device)
    y = torch.randint(0, 1000, (args.resnet_batch,), device=device)
    out = []
    for name in names:
        model = timm.create_model(name).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        out.append(Net("resnet50", name, model, opt, x, y, mode, names[0]))
    return out


def _proxies(args, device, mode):
    space = load_space(args.space, check_paths=False)
    bb = space.backbone_combos()[0]
    shape = space.input_shape(bb)
    x = torch.randn(args.proxy_batch, *shape[1:], device=device)
    y = torch.randint(0, bb["num_classes"], (args.proxy_batch,), device=device)
    out = []
    for placement in ("none", "light", "base"):
        model = build_model(space.reference_config(placement, bb).canonical()).to(device).train()
        out.append(Net("proxy", f"proxy {placement}", model, _optimizer(model, space.proxy), x, y, mode, "proxy none"))
    return out


def _profile(net: Net, steps: int = 3) -> dict:
    """Self time per operator on the device (CPU self time where there is none), ms per step."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if net.x.device.type == "cuda" else [])
    net.steps(1)
    with profile(activities=acts) as prof:
        net.steps(steps)
    key = "self_device_time_total" if net.x.device.type == "cuda" else "self_cpu_time_total"
    return {e.key: getattr(e, key) / 1000 / steps for e in prof.key_averages() if getattr(e, key) > 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--families", nargs="+", choices=["resnet50", "proxy"], default=["resnet50", "proxy"])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "fmnist_resnet20.yaml"))
    ap.add_argument("--resnet-batch", type=int, default=64)
    ap.add_argument("--resnet-size", type=int, default=224)
    ap.add_argument("--proxy-batch", type=int, default=64, help="the default space's batch")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=5, help="steps per network and round")
    ap.add_argument("--warmup", type=int, default=3, help="rounds before timing (after compilation)")
    ap.add_argument("--explain-above", type=float, default=1.2)
    ap.add_argument("--quick", action="store_true", help="a smoke test: tiny ResNet input, 3 rounds of 1 step")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.quick:
        args.resnet_batch, args.resnet_size, args.proxy_batch, args.rounds, args.steps, args.warmup = 2, 64, 8, 3, 1, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu for a smoke test)")
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True

    build = {"resnet50": _resnet50s, "proxy": _proxies}
    nets = [n for mode in args.modes for fam in args.families for n in build[fam](args, device, mode)]
    for n in nets:  # compilation (and cudnn's algorithm search) before any timing
        t0 = time.perf_counter()
        n.steps(2)
        if n.mode == "compile":
            n.compile_s = round(time.perf_counter() - t0, 1)
    for _ in range(args.warmup):
        for n in nets:
            n.steps(args.steps)
    times = {n.label: [] for n in nets}
    for _ in range(args.rounds):
        for n in nets:
            times[n.label].append(n.steps(args.steps))

    rows = []
    for n in nets:
        base = f"{n.baseline} [{n.mode}]"
        paired = [a / b for a, b in zip(times[n.label], times[base])]
        rows.append(dict(network=n.name, mode=n.mode, family=n.family, median_ms=round(1000 * statistics.median(times[n.label]), 3),
                         min_ms=round(1000 * min(times[n.label]), 3),
                         time_ratio=round(statistics.median(times[n.label]) / statistics.median(times[base]), 3),
                         time_ratio_min=round(min(times[n.label]) / min(times[base]), 3),
                         time_ratio_paired_median=round(statistics.median(paired), 3),
                         vs_eager=None, compile_s=n.compile_s))
    eager = {(r["network"]): r["median_ms"] for r in rows if r["mode"] == "eager"}
    for r in rows:
        if r["network"] in eager:
            r["vs_eager"] = round(r["median_ms"] / eager[r["network"]], 3)

    explained = {}
    by_label = {n.label: n for n in nets}
    for r, n in zip(rows, nets):
        if n.name != n.baseline and r["time_ratio"] > args.explain_above:
            mine, theirs = _profile(n), _profile(by_label[f"{n.baseline} [{n.mode}]"])
            extra = {k: mine.get(k, 0.0) - theirs.get(k, 0.0) for k in set(mine) | set(theirs)}
            explained[n.label] = [(k, round(v, 3)) for k, v in sorted(extra.items(), key=lambda kv: -kv[1])[:10]]

    print("| network | mode | median ms/step | min ms/step | x baseline (medians) | x (minima) | x (paired) | "
          "x eager | compile s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['mode']} | {r['median_ms']:.3f} | {r['min_ms']:.3f} | {r['time_ratio']:.3f} | "
              f"{r['time_ratio_min']:.3f} | {r['time_ratio_paired_median']:.3f} | {r['vs_eager']} | {r['compile_s']} |")
    for label, ops in explained.items():
        print(f"\n{label}: extra ms per step over its baseline, by operator")
        for k, v in ops:
            print(f"  {v:9.3f}  {k}")
    if args.out:
        meta = dict(vars(args), torch=torch.__version__, machine=platform.machine(), date=time.strftime("%Y-%m-%d"),
                    device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor())
        Path(args.out).write_text(json.dumps(dict(meta=meta, results=rows, explained=explained), indent=2))


if __name__ == "__main__":
    main()
