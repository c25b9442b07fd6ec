"""A/B of the C++ kernels: a git revision's against the working tree's, bit for bit and in time.

    .venv/bin/python experiments/ab_kernels.py --rev HEAD --rounds 21              # proxy networks
    .venv/bin/python experiments/ab_kernels.py --rev HEAD --resnet50 --rounds 11   # ResNet-50s

First the bitwise check: the default space's light- and base-everywhere networks train 4 steps
(3 in train mode, 1 in eval mode) at the space's input and at odd sizes, once with each version;
every parameter, buffer and the last loss must be bit for bit equal. The shipped tables
(experiments/tables/) are retrained exactly by tests/test_tables.py, so a kernel change that
rounds a single float32 differently changes recorded accuracies: if this check fails, both tables
must be rebuilt (`python experiments/build_tables.py default` and `... early_stopping`, about 85
minutes of this 2-core machine) and the replay benchmarks run again.

Then the timing, as bench_proxy_speed.py (the search's training step, 1 thread) or bench_speed.py
(ResNet-50 forward+backward, 2 threads, batch 8): no MRLA, then each MRLA network with the
revision's kernels and with the working tree's, interleaved in every round; medians, minima and
paired per-round ratios against no MRLA.

The revision's kernel source is built beside the working tree's (its own extension name), and its
Python wrappers (layers/fused_light.py, fused_base.py, fused_bn.py, and the Q/K side's fused_gate.py
and fused_attention.py where the revision has them; where not, the gate and attention run on ATen
operators as they did then) are loaded from the revision; the rest of the model code is the
working tree's.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))  # the speed benchmarks' step functions

from mrla_nas.kernels import compile_kernels, cpu_kernels  # noqa: E402
from mrla_nas.layers import cpu_ops, mrla_base, mrla_light  # noqa: E402
from mrla_nas.models import blocks, build_model  # noqa: E402
from mrla_nas.training.trainer import _optimizer  # noqa: E402
from mrla_nas.space import load_space  # noqa: E402
from bench_proxy_speed import timed_steps  # noqa: E402
from bench_speed import step_time  # noqa: E402

WRAPPERS = ("fused_bn", "fused_light", "fused_base")
QK_WRAPPERS = {"fused_gate": (mrla_light, "light_gate_kernels"), "fused_attention": (mrla_base, "base_attention")}
REAL_USE_CPU_KERNELS = {mrla_light: mrla_light.use_cpu_kernels, mrla_base: mrla_base.use_cpu_kernels}


def git_show(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


class Version:
    """One version of the kernels and their autograd wrappers, switched in by patching."""

    def __init__(self, name: str, ext, wrappers: dict):
        self.name, self.ext, self.wrappers = name, ext, wrappers

    @classmethod
    def working_tree(cls) -> "Version":
        from mrla_nas.layers import fused_attention, fused_base, fused_gate, fused_light
        return cls("tree", cpu_kernels(), {"fused_light": fused_light, "fused_base": fused_base,
                                           "fused_gate": fused_gate, "fused_attention": fused_attention})

    @classmethod
    def revision(cls, rev: str, tmp: Path) -> "Version":
        sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.strip()
        source = tmp / "mrla_cpu.cpp"
        source.write_text(git_show(rev, "mrla_nas/kernels/mrla_cpu.cpp"))
        ext = compile_kernels(source, name=f"mrla_ab_{sha}")
        mods = {}
        for name in WRAPPERS + tuple(QK_WRAPPERS):  # in dependency order: fused_bn first
            path = tmp / f"{name}.py"
            try:
                path.write_text(git_show(rev, f"mrla_nas/layers/{name}.py"))
            except subprocess.CalledProcessError:  # a revision from before the Q/K side's C++ ops
                if name in WRAPPERS:
                    raise
                mods[name] = None
                continue
            spec = importlib.util.spec_from_file_location(f"mrla_nas.layers._ab_{name}", path)
            mod = importlib.util.module_from_spec(spec)
            mod.__package__ = "mrla_nas.layers"
            sys.modules[spec.name] = mod  # dataclasses look their module up there
            spec.loader.exec_module(mod)
            mod.cpu_kernels = lambda: ext
            if name in WRAPPERS[1:]:
                mod.fused_bn = mods["fused_bn"]
            mods[name] = mod
        return cls(sha, ext, mods)

    def use(self) -> None:
        for mod in (cpu_ops, mrla_base):  # depthwise 3x3, GAP and the weighted layer sum
            mod.cpu_kernels = lambda: self.ext
        blocks.fused_light_branch = self.wrappers["fused_light"].fused_light_branch
        blocks.fused_base_branch = self.wrappers["fused_base"].fused_base_branch
        for name, (module, function) in QK_WRAPPERS.items():
            wrapper = self.wrappers[name]
            if wrapper is None:  # the gate / attention from ATen operators, as before their C++ op
                module.use_cpu_kernels = lambda x: False
            else:
                module.use_cpu_kernels = REAL_USE_CPU_KERNELS[module]
                setattr(module, function, getattr(wrapper, function))


def bitwise_check(versions, space) -> bool:
    bb = space.backbone_combos()[0]
    chans, h, w = space.input_shape(bb)[1:]
    ok = True
    for placement in ("light", "base"):
        for batch, size in ((space.proxy["batch_size"], (h, w)), (7, (9, 5)), (3, (1, 3)), (2, (2, 1))):
            torch.manual_seed(0)
            model = build_model(space.reference_config(placement, bb).canonical())
            results = []
            for v in versions:
                v.use()
                m = copy.deepcopy(model)
                opt = _optimizer(m, space.proxy)
                gen = torch.Generator().manual_seed(1)
                for step in range(4):
                    x = torch.randn(batch, chans, *size, generator=gen)
                    y = torch.randint(0, 10, (batch,), generator=gen)
                    m.train(step < 3)
                    loss = F.cross_entropy(m(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                results.append([t.detach() for t in [*m.parameters(), *m.buffers(), loss]])
            same = all(torch.equal(a, b) for a, b in zip(*results))
            worst = max((a.double() - b.double()).abs().max().item() for a, b in zip(*results) if a.numel())
            print(f"  {placement:5s} batch {batch:3d} at {size[0]}x{size[1]}: "
                  f"{'bit for bit equal' if same else f'DIFFERENT (max |diff| {worst:.3g})'}")
            ok &= same
    return ok


def timing(versions, space, args) -> None:
    """Each network's step as the speed benchmarks time it (their own step functions)."""
    steps = {}  # name -> (version, a function timing one round of it)
    if args.resnet50:
        torch.set_num_threads(2)
        x = torch.randn(8, 3, 224, 224)
        models = {"none": "resnet50", "light": "mrla_light_resnet50", "base": "mrla_base_resnet50"}
        for placement, name in models.items():
            model = timm.create_model(name).train()
            for v in versions if placement != "none" else versions[:1]:
                m = copy.deepcopy(model)
                steps[placement if placement == "none" else f"{placement}:{v.name}"] = (v, partial(step_time, m, x))
    else:
        torch.set_num_threads(1)
        bb = space.backbone_combos()[0]
        x = torch.randn(space.proxy["batch_size"], *space.input_shape(bb)[1:])
        y = torch.randint(0, 10, (x.shape[0],))
        for placement in ("none", "light", "base"):
            model = build_model(space.reference_config(placement, bb).canonical()).train()
            for v in versions if placement != "none" else versions[:1]:
                m = copy.deepcopy(model)
                steps[placement if placement == "none" else f"{placement}:{v.name}"] = (
                    v, partial(timed_steps, m, _optimizer(m, space.proxy), x, y, args.steps, False))

    def run(name):
        version, step = steps[name]
        version.use()
        return step()

    for name in steps:
        run(name)
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name in steps:
            times[name].append(run(name))
    ref = times["none"]
    print(f"{'network':14s} {'median ms':>10s} {'min ms':>8s} {'x none':>7s} {'x min':>6s} {'x paired':>8s}")
    for name, t in times.items():
        paired = statistics.median(a / b for a, b in zip(t, ref))
        print(f"{name:14s} {1000 * statistics.median(t):10.2f} {1000 * min(t):8.2f} "
              f"{statistics.median(t) / statistics.median(ref):7.3f} {min(t) / min(ref):6.3f} {paired:8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="HEAD", help="the git revision to compare the working tree with")
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "fmnist_resnet20.yaml"))
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=5, help="training steps per network and round (proxy)")
    ap.add_argument("--resnet50", action="store_true", help="time the ResNet-50s instead of the proxy networks")
    ap.add_argument("--no-timing", action="store_true", help="only the bitwise check")
    args = ap.parse_args()
    space = load_space(args.space, check_paths=False)
    with tempfile.TemporaryDirectory() as tmp:
        versions = [Version.revision(args.rev, Path(tmp)), Version.working_tree()]
        print(f"bitwise check, {versions[0].name} against the working tree:")
        equal = bitwise_check(versions, space)
        print("bit for bit equal: the shipped tables stay valid" if equal else
              "NOT bit for bit equal: rebuild both tables (see this file's docstring)")
        if not args.no_timing:
            timing(versions, space, args)
    sys.exit(0 if equal else 1)


if __name__ == "__main__":
    main()
