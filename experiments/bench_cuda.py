"""The GPU checks, prepared for the day a GPU is lent (issues 13 and 22): one script, one JSON, within
8 minutes on one GPU. Its plan, each part timed and recorded on its own (a failing part does not
stop the others):

  units       the MRLA units on the device against float64 on the CPU: light and base, in the
              ResNet and the DeiT forms, forward and the input/weight gradients
  precision   one proxy training step under fp16 and bf16 autocast against fp32: finite, and how far
  throughput  training images/s of ResNet-50 without MRLA, with MRLA-light and MRLA-base at batch 64,
              eager fp32 and AMP (bf16 autocast, channels_last), interleaved, as ratios to resnet50
  search      a 4-trial search of the default space at 0.25 GPU per trial (`mrla-nas search`)
  train       `mrla-nas train` of an exported network for one epoch on the device

    python experiments/bench_cuda.py --out $OUT/bench_cuda.json        # on the GPU machine
    .venv/bin/python experiments/bench_cuda.py --dry-run               # the whole plan on the CPU, tiny

``--dry-run`` runs every part on the CPU at toy sizes (tests/test_bench_cuda.py runs it), so the
script cannot rot before a GPU runs it; its figures say nothing about a GPU.
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
from mrla_nas.space import load_space  # noqa: E402



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PARTS = ("units", "precision", "throughput", "search", "train")


def _units(args, device) -> dict:
    """Max relative error of output and gradients, device float32 against CPU float64 (TF32 off for
    the comparison: cuDNN's convolutions use it by default on Ampere and later, ~1e-3 relative)."""
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return _units_fp32(args, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _units_fp32(args, device) -> dict:
    out = {}
    nets = {"resnet_light": ("mrla_light_resnet20", {}), "resnet_base": ("mrla_base_resnet20", {}),
            "deit_light": ("mrla_light_deit_tiny_patch16_224", {"img_size": args.deit_size}),
            "deit_base": ("mrla_base_deit_tiny_patch16_224", {"img_size": args.deit_size})}
    for label, (name, kw) in nets.items():
        torch.manual_seed(0)
        ref = timm.create_model(name, **kw).double().train()
        size = kw.get("img_size", 32)
        x = torch.randn(4, 3, size, size, dtype=torch.float64, requires_grad=True)
        mine = timm.create_model(name, **kw).train()
        mine.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
        mine = mine.to(device)
        xd = x.detach().float().to(device).requires_grad_(True)
        y_ref, y = ref(x), mine(xd)
        y_ref.square().sum().backward()
        y.square().sum().backward()

        def rel(a, b):
            return float((a.detach().double().cpu() - b.detach()).abs().max() / b.detach().abs().max().clamp_min(1e-12))
        worst_w = max(rel(p.grad, q.grad) for (n, p), (_, q) in zip(mine.named_parameters(), ref.named_parameters())
                      if q.grad is not None and "mrla" in n)
        out[label] = {"model": name, "output": rel(y, y_ref), "input_grad": rel(xd.grad, x.grad),
                      "mrla_weight_grad": worst_w}
        out[label]["ok"] = max(out[label]["output"], out[label]["input_grad"]) < args.unit_tolerance
    return out


def _precision(args, device) -> dict:
    """One proxy step (forward, loss, backward) of the default space's MRLA networks per precision."""
    from mrla_nas.training.device import resolve

    space = load_space(args.space, check_paths=False)
    bb = space.backbone_combos()[0]
    x = torch.randn(args.proxy_batch, *space.input_shape(bb)[1:])
    y = torch.randint(0, bb["num_classes"], (args.proxy_batch,))
    out = {}
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])  # fp16 is CUDA's only
    for placement in ("light", "base"):
        arch = space.reference_config(placement, bb).canonical()
        torch.manual_seed(0)
        state = build_model(arch).state_dict()
        results = {}
        for precision in precisions:
            where = resolve({"device": device.type, "precision": precision})
            model = build_model(arch)
            model.load_state_dict(state)
            model = where.place(model).train()
            with where.autocast():
                logits = model(where.images(x.to(device)))
            loss = F.cross_entropy(logits.float(), y.to(device))
            scaler = where.scaler()
            (scaler.scale(loss) if scaler else loss).backward()
            grads = torch.cat([p.grad.float().flatten() / (scaler.get_scale() if scaler else 1.0)
                               for p in model.parameters() if p.grad is not None])
            results[precision] = {"loss": loss.item(), "logits": logits.float().detach().cpu(), "grads": grads.cpu()}
        ref = results["fp32"]
        out[placement] = {p: {"loss": r["loss"], "finite": bool(torch.isfinite(r["logits"]).all() and torch.isfinite(r["grads"]).all()),
                              "logit_max_abs_dev": float((r["logits"] - ref["logits"]).abs().max()),
                              "grad_rel_dev": float((r["grads"] - ref["grads"]).norm() / ref["grads"].norm())}
                          for p, r in results.items()}
        if device.type != "cuda":
            out[placement]["fp16"] = "not run: fp16 needs CUDA (CPU autocast in fp16 is refused by the tool)"
    return out


def _throughput(args, device) -> dict:
    """Training images/s, interleaved rounds, medians; ratios to resnet50 in the same mode."""
    modes = {"eager_fp32": {}, "amp_bf16_channels_last": {"precision": "bf16", "channels_last": True}}
    names = ["resnet50", "mrla_light_resnet50", "mrla_base_resnet50"]
    from mrla_nas.training.device import resolve

    x = torch.randn(args.resnet_batch, 3, args.resnet_size, args.resnet_size)
    y = torch.randint(0, 1000, (args.resnet_batch,))
    nets = []
    for mode, opts in modes.items():
        where = resolve(dict({"device": device.type}, **opts))
        for name in names:
            model = where.place(timm.create_model(name)).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            nets.append((mode, name, where, model, opt, where.images(x.to(device)), y.to(device)))

    def steps(net, n):
        mode, name, where, model, opt, xd, yd = net
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            with where.autocast():
                logits = model(xd)
            loss = F.cross_entropy(logits.float(), yd)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        return (time.perf_counter() - t0) / n

    for net in nets:
        steps(net, args.warmup)
    times = {(n[0], n[1]): [] for n in nets}
    for _ in range(args.rounds):
        for net in nets:
            times[(net[0], net[1])].append(steps(net, args.steps))
    out = {}
    for (mode, name), ts in times.items():
        base = times[(mode, "resnet50")]
        out[f"{name} [{mode}]"] = {"images_per_s": round(args.resnet_batch / statistics.median(ts), 1),
                                   "time_ratio": round(statistics.median(ts) / statistics.median(base), 3),
                                   "time_ratio_paired_median": round(statistics.median(a / b for a, b in zip(ts, base)), 3)}
    return out


def _cli(args, argv: list, timeout: int) -> str:
    import subprocess

    cmd = [sys.executable, "-m", "mrla_nas.cli", *argv]
    done = subprocess.run(cmd, cwd=args.workdir, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv[:2])} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def _search(args, device) -> dict:
    """Four trials of the default space, four at once on one GPU (0.25 each)."""
    import yaml

    space = yaml.safe_load(Path(args.space).read_text())
    space["name"] = "bench_cuda"
    gpu = device.type == "cuda"
    space["search"] = dict(space.get("search", {}), trials=4, concurrency=4, initial=[],
                           gpus_per_trial=0.25 if gpu else 0)
    space["proxy"] = dict(space.get("proxy", {}), device="cuda" if gpu else "cpu")
    if args.dry_run:
        space["proxy"].update(train_size=64, val_size=32, epochs=1)
        space["search"]["concurrency"] = 2
    path = Path(args.workdir) / "bench_cuda.yaml"
    path.write_text(yaml.safe_dump(space))
    t0 = time.perf_counter()
    _cli(args, ["search", str(path), "--runs-dir", "runs", "--name", "bench_cuda", "--quiet"], args.part_timeout)
    wall = time.perf_counter() - t0
    import pandas as pd
    trials = pd.read_csv(Path(args.workdir) / "runs" / "bench_cuda" / "trials.csv")
    return {"wall_s": round(wall, 1), "statuses": trials["status"].value_counts().to_dict(),
            "devices": trials["device"].fillna("-").value_counts().to_dict(),
            "accuracy": trials["accuracy"].round(4).tolist(), "train_s": trials["train_s"].round(1).tolist()}


def _train(args, device) -> dict:
    """`mrla-nas export` of the search's knee, then `mrla-nas train` for one epoch on the device."""
    run = Path(args.workdir) / "runs" / "bench_cuda"
    _cli(args, ["export", str(run), "--knee", "-o", str(run / "best.yaml")], 300)
    t0 = time.perf_counter()
    extra = ["--train-size", "256"] if args.dry_run else []
    out = _cli(args, ["train", str(run / "best.yaml"), "--epochs", "1", "--device", device.type,
                      "--out", str(run / "train"), *extra], args.part_timeout)
    result = json.loads((run / "train" / "result.json").read_text())
    return {"wall_s": round(time.perf_counter() - t0, 1), "device": result["device"],
            "test_accuracy": result["test_accuracy"], "epoch_s": result["history"][0]["seconds"],
            "log": out.strip().splitlines()[-1]}


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--dry-run", action="store_true", help="every part on the CPU at toy sizes (CI)")
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "fmnist_resnet20.yaml"))
    ap.add_argument("--resnet-batch", type=int, default=64)
    ap.add_argument("--resnet-size", type=int, default=224)
    ap.add_argument("--deit-size", type=int, default=224)
    ap.add_argument("--proxy-batch", type=int, default=128, help="the default space's batch")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=5, help="steps per network and round")
    ap.add_argument("--warmup", type=int, default=5, help="steps before timing (cudnn's algorithm search)")
    ap.add_argument("--unit-tolerance", type=float, default=1e-4)
    ap.add_argument("--part-timeout", type=int, default=240, help="seconds for the search and the training")
    ap.add_argument("--workdir", help="where the search's run goes (default: a temporary folder)")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.dry_run:
        args.device, args.resnet_batch, args.resnet_size, args.deit_size = "cpu", 2, 32, 32
        args.proxy_batch, args.rounds, args.steps, args.warmup = 8, 3, 1, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (--dry-run runs the plan on the CPU)")
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = args.workdir or tmp
        parts = {"units": _units, "precision": _precision, "throughput": _throughput, "search": _search,
                 "train": _train}
        report = {"meta": {"device": args.device, "dry_run": args.dry_run, "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
                           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
                           else platform.processor()}}
        for name in args.parts:
            t0 = time.perf_counter()
            try:
                report[name] = {"status": "ok", "result": parts[name](args, device)}
            except Exception as e:  # recorded: the next part still runs
                report[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:2000]}
            report[name]["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"{name}: {report[name]['status']} in {report[name]['seconds']} s", flush=True)
            if args.out:  # after every part: a run cut short still leaves what it measured
                Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, indent=1, default=str))
    if any(report[p]["status"] != "ok" for p in args.parts):
        sys.exit(1)


if __name__ == "__main__":
    main()
