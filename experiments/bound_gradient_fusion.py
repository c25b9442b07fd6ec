"""Upper bounds on what fusing MRLA's gradient accumulations into its kernels could save.

    .venv/bin/python experiments/bound_gradient_fusion.py --rounds 21
    .venv/bin/python experiments/bound_gradient_fusion.py --resnet50 --rounds 21   # issue 13's ResNet-50s

Autograd adds two gradients in every light block that a fused block tail would fold into the
kernel's own pass: o's gradient from the branch plus the gate's GAP gradient, and the shortcut's
gradient from the residual sum plus the recurrence's (lambda * s). Here the default space's
light-everywhere network trains with the gate's input (``nogap``), the recurrence's input
(``noshortcut``) or both detached, so that neither addition (nor the gate's backward, nor the
shortcut's second gradient) happens at all: the training step then *over*-states what any fusion of
those additions can save. MRLA-base: every block's backward writes one gradient map per value of
the memory, which autograd adds across the stage's later blocks; ``base, earlier values detached``
attends over the earlier blocks' values without a gradient, so none of those additions happen (nor
the gradient flow through them), the bound for accumulating them in place. And the whole Q/K side
(issue 13's sixth session): ``nogate`` convolves with Wv's kernels ungated (no GAP, no Q/K, no
sigmoid, either way), ``base, constant attention`` weights every value of the stage equally (no GAP,
no Q/K, no keys, no softmax). ``floor`` replaces light's branch by ``o + lambda * s`` in one ATen
call, a function that any implementation of MRLA-light computes *and more* (the depthwise conv, the
gate, BatchNorm's statistics, which need a whole pass over the maps before the first output): no
implementation of the branch can take less time than it. The numbers are wrong gradients and serve only as bounds; interleaved with the unchanged networks and no MRLA, medians
after two warm-up rounds, one thread. ``--resnet50`` runs the Q/K bounds and the floor on the
ResNet-50s instead (bench_speed.py's setting: forward + backward, 2 threads, batch 8, 224 px, against
timm's ``resnet50``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_proxy_speed import timed_steps  # noqa: E402
from bench_speed import step_time  # noqa: E402
from mrla_nas.layers.fused_base import fused_base_branch  # noqa: E402
from mrla_nas.layers.fused_light import fused_light_branch  # noqa: E402
from mrla_nas.layers.mrla_base import LayerMemory  # noqa: E402
from mrla_nas.models import blocks, build_model  # noqa: E402
from mrla_nas.training.trainer import _optimizer  # noqa: E402
from mrla_nas.space import load_space  # noqa: E402

VARIANTS = ("unchanged", "nogap", "noshortcut", "both", "nogate", "floor")  # light
BASE_VARIANTS = ("base unchanged", "base, earlier values detached", "base, constant attention")


def _detaching_forward(variant: str):
    """A light block's forward (the fused path) with the chosen inputs of its branch detached."""
    unchanged = blocks._LayerAttentionMixin.forward

    def forward(self, x, memory=None):
        if variant == "base, earlier values detached" and self.mrla_form == "base":
            return _base_without_earlier_gradients(self, x, memory)
        if variant == "base, constant attention" and self.mrla_form == "base":
            return _base_with_constant_attention(self, x, memory)
        if variant == "nogate" and self.mrla_form == "light":
            o, shortcut = self.block_output(x)
            b, c = o.shape[:2]
            ungated = self.mrla.qkv.Wv.weight.view(1, c * 9).expand(b, -1).reshape(b * c, 9)
            return fused_light_branch(o, shortcut, ungated, self.mrla.lambda_t, self.bn_mrla)
        if variant == "floor" and self.mrla_form == "light":
            o, shortcut = self.block_output(x)
            return torch.addcmul(o, self.mrla.lambda_t, shortcut)
        if variant not in VARIANTS[1:] or self.mrla_form != "light":
            return unchanged(self, x, memory)
        o, shortcut = self.block_output(x)
        gate_in = o.detach() if variant in ("nogap", "both") else o
        s = shortcut.detach() if variant in ("noshortcut", "both") else shortcut
        return fused_light_branch(o, s, self.mrla.gated_kernels(gate_in), self.mrla.lambda_t, self.bn_mrla)

    return forward


def _base_with_constant_attention(self, x, memory):
    o, _ = self.block_output(x)
    v = self.mrla.qkv.value(o)
    values = [v] if memory is None else memory.values + [v]
    weights = o.new_full((o.shape[0], o.shape[1], len(values)), 1.0 / len(values))
    return fused_base_branch(o, weights, values, self.bn_mrla), LayerMemory([], values)


def _base_without_earlier_gradients(self, x, memory):
    o, _ = self.block_output(x)
    weights, memory = self.mrla.attend(o, memory)
    if weights is None:
        weights = o.new_ones(o.shape[0], o.shape[1], 1)
    values = [v.detach() for v in memory.values[:-1]] + memory.values[-1:]
    return fused_base_branch(o, weights, values, self.bn_mrla), memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "fmnist_resnet20.yaml"))
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--resnet50", action="store_true", help="the ResNet-50s (forward + backward) instead")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.resnet50:
        return resnet50_bounds(args.rounds)
    torch.set_num_threads(1)
    space = load_space(args.space, check_paths=False)
    bb = space.backbone_combos()[0]
    shape = space.input_shape(bb)
    x, y = torch.randn(space.proxy["batch_size"], *shape[1:]), torch.randint(0, 10, (space.proxy["batch_size"],))
    nets = {}
    for placement in ("none", "light", "base"):
        model = build_model(space.reference_config(placement, bb).canonical()).train()
        nets[placement] = (model, _optimizer(model, space.proxy))
    forwards = {v: _detaching_forward(v) for v in VARIANTS + BASE_VARIANTS}
    original = blocks._LayerAttentionMixin.forward
    times = {k: [] for k in ("none", *VARIANTS, *BASE_VARIANTS)}
    try:
        for _ in range(args.rounds + 2):
            times["none"].append(timed_steps(*nets["none"], x, y, args.steps, False))
            for v in VARIANTS + BASE_VARIANTS:
                blocks._LayerAttentionMixin.forward = forwards[v]
                times[v].append(timed_steps(*nets["light" if v in VARIANTS else "base"], x, y, args.steps, False))
    finally:
        blocks._LayerAttentionMixin.forward = original
    report(times)


def resnet50_bounds(rounds: int) -> None:
    import timm
    torch.set_num_threads(2)
    x = torch.randn(8, 3, 224, 224)
    nets = {name: timm.create_model(name).train() for name in ("resnet50", "mrla_light_resnet50", "mrla_base_resnet50")}
    light, base = ("unchanged", "nogate", "floor"), ("base unchanged", "base, constant attention")
    forwards = {v: _detaching_forward(v) for v in light + base}
    original = blocks._LayerAttentionMixin.forward
    times = {k: [] for k in ("none", *light, *base)}
    try:
        for _ in range(rounds + 2):
            times["none"].append(step_time(nets["resnet50"], x))
            for v in light + base:
                blocks._LayerAttentionMixin.forward = forwards[v]
                times[v].append(step_time(nets["mrla_light_resnet50" if v in light else "mrla_base_resnet50"], x))
    finally:
        blocks._LayerAttentionMixin.forward = original
    report(times)


def report(times) -> None:
    base = statistics.median(times["none"][2:])
    print(f"{'network':32s} {'median ms':>10s} {'x none':>7s}")
    for k, v in times.items():
        med = statistics.median(v[2:])
        print(f"{('light, ' + k) if k in VARIANTS else k:32s} {1000 * med:10.2f} {med / base:7.3f}")


if __name__ == "__main__":
    main()
