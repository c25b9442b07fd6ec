"""MRLA-light DeiT with and without its token-layout C++ op (mrla_nas/layers/fused_tokens.py), in one
process, interleaved: DeiT-T at 224 px (forward + backward, 2 threads, batch 8, against timm's
``deit_tiny_patch16_224``) and the ViT space's proxy network (``search_spaces/fmnist_vit.yaml``,
light in every group; the search's training step, 1 thread, against no MRLA).

    .venv/bin/python experiments/ab_token_light.py --rounds 21
    .venv/bin/python experiments/ab_token_light.py --op-rev 9af69af --rounds 21   # the op alone, old against new

"without" runs TokenMRLALight's previous path (the grid's transposed copy, the C++ depthwise conv,
ATen's GELU, the gate, lambda and the concatenation as separate operators) by switching the op off
in that module only. Medians of per-round times and of per-round ratios, after two warm-up rounds.

``--op-rev REV`` times the op alone instead, forward + backward at DeiT-T's size ([8, 197, 192], 2
threads): REV's C++ source built beside the working tree's (ab_kernels.py's way), interleaved, with
the largest differences between the two versions' outputs and gradients.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import timm
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_proxy_speed import timed_steps  # noqa: E402
from bench_speed import step_time  # noqa: E402
from mrla_nas.layers import tokens  # noqa: E402
from mrla_nas.models import build_model  # noqa: E402
from mrla_nas.training.trainer import _optimizer  # noqa: E402
from mrla_nas.space import load_space  # noqa: E402


@contextlib.contextmanager
def without_token_op():
    original = tokens.use_cpu_kernels
    tokens.use_cpu_kernels = lambda x: False
    try:
        yield
    finally:
        tokens.use_cpu_kernels = original


def report(title, times) -> None:
    base = times["none"]
    print(f"\n{title}\n{'network':28s} {'median ms':>10s} {'x none (medians)':>17s} {'x none (paired)':>16s}")
    for k, v in times.items():
        paired = statistics.median(a / b for a, b in zip(v[2:], base[2:]))
        print(f"{k:28s} {1000 * statistics.median(v[2:]):10.2f} {statistics.median(v[2:]) / statistics.median(base[2:]):17.3f} "
              f"{paired:16.3f}")


def op_against_revision(rev: str, rounds: int) -> None:
    import tempfile
    import time

    from ab_kernels import git_show
    from mrla_nas.kernels import compile_kernels, cpu_kernels

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mrla_cpu.cpp"
        source.write_text(git_show(rev, "mrla_nas/kernels/mrla_cpu.cpp"))
        versions = {rev: compile_kernels(source, name="mrla_ab_token"), "tree": cpu_kernels()}
    torch.set_num_threads(2)
    b, side, c = 8, 14, 192
    u, p, g = (torch.randn(b, 1 + side * side, c) for _ in range(3))
    kt, gate, lam = torch.randn(9, c), torch.rand(b, c), torch.randn(c)
    outs = {k: [m.token_light_forward(u, p, kt, gate, lam, 1, side),
                *m.token_light_backward(g, u, p, kt, gate, lam, 1, side)] for k, m in versions.items()}
    print("max |tree - rev| (output, then the gradients of u, p, the taps, the gate, lambda):",
          [f"{(a - r).abs().max().item():.1e}" for a, r in zip(outs["tree"], outs[rev])])
    times = {k: [] for k in versions}
    for _ in range(rounds + 2):
        for k, m in versions.items():
            t0 = time.perf_counter()
            for _ in range(20):
                m.token_light_forward(u, p, kt, gate, lam, 1, side)
                m.token_light_backward(g, u, p, kt, gate, lam, 1, side)
            times[k].append((time.perf_counter() - t0) / 20)
    for k, v in times.items():
        print(f"{k:10s} median {1000 * statistics.median(v[2:]):.3f} ms  min {1000 * min(v[2:]):.3f} ms")
    print(f"tree / {rev}, paired median: {statistics.median(a / r for a, r in zip(times['tree'][2:], times[rev][2:])):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--op-rev", help="time the token op alone against this git revision's")
    args = ap.parse_args()
    if args.op_rev:
        return op_against_revision(args.op_rev, args.rounds)
    torch.manual_seed(0)

    space = load_space(ROOT / "search_spaces" / "fmnist_vit.yaml", check_paths=False)
    bb = space.backbone_combos()[0]
    batch = space.proxy["batch_size"]
    xs, ys = torch.randn(batch, *space.input_shape(bb)[1:]), torch.randint(0, 10, (batch,))
    proxies = {p: build_model(space.reference_config(p, bb).canonical()).train() for p in ("none", "light")}
    proxies = {p: (m, _optimizer(m, space.proxy)) for p, m in proxies.items()}
    deits = {"none": timm.create_model("deit_tiny_patch16_224").train(),
             "light": timm.create_model("mrla_light_deit_tiny_patch16_224").train()}
    x224 = torch.randn(8, 3, 224, 224)
    proxy_t = {"none": [], "light, token op": [], "light, without": []}
    deit_t = {"none": [], "light, token op": [], "light, without": []}
    for _ in range(args.rounds + 2):
        torch.set_num_threads(1)
        proxy_t["none"].append(timed_steps(*proxies["none"], xs, ys, args.steps, False))
        proxy_t["light, token op"].append(timed_steps(*proxies["light"], xs, ys, args.steps, False))
        with without_token_op():
            proxy_t["light, without"].append(timed_steps(*proxies["light"], xs, ys, args.steps, False))
        torch.set_num_threads(2)
        deit_t["none"].append(step_time(deits["none"], x224))
        deit_t["light, token op"].append(step_time(deits["light"], x224))
        with without_token_op():
            deit_t["light, without"].append(step_time(deits["light"], x224))
    report(f"fmnist_vit proxy network (batch {batch}, 28 px, 1 thread, step with {space.proxy['optimizer']})", proxy_t)
    report("DeiT-T (batch 8, 224 px, 2 threads, forward + backward)", deit_t)


if __name__ == "__main__":
    main()
