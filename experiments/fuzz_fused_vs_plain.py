"""Random MRLA networks: the C++ kernels against the plain PyTorch path, in float64.

    .venv/bin/python experiments/fuzz_fused_vs_plain.py --resnets 400 --vits 150 --seed 1

Each random ResNet (basic or bottleneck blocks, every stem, 1-3 stages, widths 2-32, heads and SE
reductions drawn per stage, 1-33 px, batch 1-3) and ViT (depth 1-5, groups of 1-4 blocks, widths
8-32, patches 2-7) is built once and run through both paths from the same state: the train-mode
output, every parameter's gradient, the running statistics and the eval-mode output must agree to
1e-8 (the largest difference seen is printed: ~3e-9, on one 5 px image through the deep stem, where
BatchNorm normalises four values and amplifies float64 rounding). A gradient is compared relative to its own size, or to 1e-3 of the network's largest one when
it is smaller: BatchNorm over a single value per channel makes true gradients of zero, whose two
computations differ only in rounding noise. Prints each disagreement and the counts; exit 1 if any.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrla_nas import build_model  # noqa: E402
from mrla_nas.arch import arch_from_dict  # noqa: E402
from mrla_nas.errors import ConfigError  # noqa: E402
from mrla_nas.layers.cpu_ops import plain_pytorch  # noqa: E402

TOL = 1e-8  # a real error is O(1); float64 rounding reaches ~3e-9 on degenerate inputs (see the docstring)


def _resnet(rng):
    n = rng.choice([1, 2, 3])
    return {"block": rng.choice(["basic", "bottleneck"]), "layers": [rng.choice([1, 2]) for _ in range(n)],
            "channels": [rng.choice([2, 4, 6, 8, 12, 16, 24, 32]) for _ in range(n)],
            "stem": rng.choice(["small", "7x7", "deep"]), "in_chans": rng.choice([1, 3]), "num_classes": rng.choice([2, 10]),
            "stages": [{"form": rng.choice(["none", "light", "base"]), "heads": rng.choice([None, None, 1, 2, 3, 4]),
                        "reduction": rng.choice([None, None, 2, 4])} for _ in range(n)]}, \
        rng.choice([1, 2, 3, 5, 7, 8, 13, 16, 17, 28, 33])


def _vit(rng):
    depth, group = rng.choice([1, 2, 3, 4, 5]), rng.choice([1, 2, 3, 4])
    patch = rng.choice([2, 4, 7])
    size = patch * rng.choice([1, 2, 3, 4])
    return {"backbone": "vit", "embed_dim": rng.choice([8, 12, 16, 24, 32]), "depth": depth,
            "num_heads": rng.choice([1, 2, 4]), "patch_size": patch, "img_size": size, "mlp_ratio": rng.choice([1.0, 2.0]),
            "in_chans": rng.choice([1, 3]), "num_classes": 5, "group_size": group,
            "stages": [{"form": rng.choice(["none", "light", "base"]), "heads": rng.choice([None, 1, 2, 4]),
                        "reduction": rng.choice([None, None, 2])} for _ in range(-(-depth // group))]}, size


def _run(model, state, x, plain: bool):
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    model.train()
    with plain_pytorch() if plain else torch.enable_grad():
        try:
            out = model(x)
        except ValueError:  # BatchNorm in training over one value per channel: both paths refuse it
            out, grads, buffers = None, {}, {}
        else:
            out.square().sum().backward()
            grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
            buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        model.eval()
        with torch.no_grad():
            evaluated = model(x)
    return out, grads, buffers, evaluated


def _worst(fused, plain) -> float:
    def rel(a, b, floor=0.0):
        diff = float((a - b).detach().abs().max())
        return 0.0 if diff == 0 else diff / max(float(b.detach().abs().max()), floor, 1e-300)

    (o1, g1, b1, e1), (o2, g2, b2, e2) = fused, plain
    if (o1 is None) != (o2 is None) or set(g1) != set(g2):
        return float("inf")
    errs = [rel(e1, e2)] + ([rel(o1, o2)] if o1 is not None else [])
    scale = max((float(v.abs().max()) for v in g2.values()), default=1.0)
    errs += [rel(g1[k], g2[k], 1e-3 * scale) for k in g1] + [rel(b1[k], b2[k]) for k in b1]
    return max(errs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resnets", type=int, default=100)
    ap.add_argument("--vits", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    counts, bad, largest = {"resnet": 0, "vit": 0}, 0, 0.0
    for family, wanted, draw in (("resnet", args.resnets, _resnet), ("vit", args.vits, _vit)):
        while counts[family] < wanted:
            config, size = draw(rng)
            try:
                arch = arch_from_dict(config)
            except ConfigError:  # a draw the config rules refuse (heads not dividing a width...)
                continue
            counts[family] += 1
            torch.manual_seed(counts[family])
            model = build_model(arch).double()
            for m in model.modules():  # BatchNorm away from its identity initialisation
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.data.uniform_(0.5, 1.5)
                    m.bias.data.uniform_(-0.2, 0.2)
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            x = torch.randn(rng.choice([1, 2, 3]), arch.in_chans, size, size, dtype=torch.float64)
            worst = _worst(_run(model, state, x, False), _run(model, state, x, True))
            largest = max(largest, worst)
            if worst > TOL:
                bad += 1
                print(f"DISAGREE {arch.summary()} input {tuple(x.shape)}: {worst:.3g}  {config}")
    print(f"{counts['resnet']} random MRLA ResNets, {counts['vit']} random MRLA ViTs; {bad} disagree beyond {TOL:g}; "
          f"largest difference {largest:.2g}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
