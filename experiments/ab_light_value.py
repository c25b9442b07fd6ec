"""A/B: MRLA-light's gated value as a plain depthwise conv + multiply vs. folded into B*C groups.

    .venv/bin/python experiments/ab_light_value.py --rounds 12

Both variants run in the same process, interleaved with timm's resnet50 (2 threads, batch 8, 224²,
forward+backward, medians over rounds after 2 warm-up rounds); the "plain" variant is patched in.
Both run on the plain PyTorch path (``plain_pytorch()``): the fused C++ branch, used by default on
CPU since, does not call ``LayerQueryKeyValue.value``.
"""
import argparse
import statistics
import time

import timm
import torch

import mrla_nas  # noqa: F401
from mrla_nas.layers.cpu_ops import plain_pytorch
from mrla_nas.layers.heads import LayerQueryKeyValue


def plain(self, x, gate=None):
    b, c, h, w = x.shape
    v = self.Wv(x)
    if gate is None:
        return v
    return (v.view(b, self.heads, c // self.heads, h, w) * gate.view(b, self.heads, 1, 1, 1)).view(b, c, h, w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(2)
    folded = LayerQueryKeyValue.value
    ref, light = timm.create_model("resnet50").train(), timm.create_model("mrla_light_resnet50").train()
    x = torch.randn(8, 3, 224, 224)

    def step(model):
        t = time.perf_counter()
        with plain_pytorch():
            model(x).sum().backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times = {"resnet50": [], "folded": [], "plain": []}
    for _ in range(args.rounds + 2):
        times["resnet50"].append(step(ref))
        LayerQueryKeyValue.value = folded
        times["folded"].append(step(light))
        LayerQueryKeyValue.value = plain
        times["plain"].append(step(light))
    LayerQueryKeyValue.value = folded
    base = statistics.median(times["resnet50"][2:])
    for k, v in times.items():
        med = statistics.median(v[2:])
        print(f"{k:9s} {med:.3f} s  {med / base:.3f}x")


if __name__ == "__main__":
    main()
