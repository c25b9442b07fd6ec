"""What ``mrla-nas space`` prints: the size of a space, its cost range and the reference placements."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..arch import ArchConfig, StageConfig
from ..cost.flops import Cost, measure_arch
from ..errors import ConfigError
from .schema import REFERENCE_PLACEMENTS
from .search_space import SearchSpace


@dataclass
class SpaceSummary:
    size: int
    flops_range: Tuple[int, int]
    params_range: Tuple[int, int]
    references: Dict[str, Tuple[bool, Optional[Cost]]]  # placement -> (inside the space and budget, cost)


def within_budget(space: SearchSpace, cost: Cost) -> bool:
    c = space.constraints
    return (c["max_flops"] is None or cost.flops <= c["max_flops"]) and (
        c["max_params"] is None or cost.params <= c["max_params"])


def extreme_configs(space: SearchSpace) -> List[ArchConfig]:
    """The cheapest and the dearest config (by FLOPs and by params) of every backbone choice.

    MRLA's cost is additive over stages (a stage's unit sees only its own stage's blocks), so each
    stage option is measured once with every other stage plain, and the extremes are the sums of
    per-stage minima / maxima: sum(|options|) measurements instead of prod(|options|).
    """
    out = []
    for bb in space.backbone_combos():
        options = space.stage_options(bb)
        plain = [StageConfig()] * len(options)
        deltas = []  # per stage: [(option, cost)]
        for i, opts in enumerate(options):
            row = []
            for opt in opts:
                stages = plain[:i] + [opt] + plain[i + 1:]
                row.append((opt, measure_arch(space.arch(bb, stages), space.input_shape(bb), space.flops_convention)))
            deltas.append(row)
        for metric in ("flops", "params"):
            for pick in (min, max):
                stages = [pick(row, key=lambda oc: getattr(oc[1], metric))[0] for row in deltas]
                out.append(space.arch(bb, stages).canonical())
    return list({a.key(): a for a in out}.values())


def check_budget(space: SearchSpace) -> List[Tuple[ArchConfig, Cost]]:
    """Measure the extreme configs; raise ConfigError when no config can meet the constraints."""
    measured = [(a, measure_arch(a, space.input_shape(), space.flops_convention)) for a in extreme_configs(space)]
    cheapest_flops = min(c.flops for _, c in measured)
    cheapest_params = min(c.params for _, c in measured)
    if space.constraints["max_flops"] is not None and cheapest_flops > space.constraints["max_flops"]:
        raise ConfigError(f"constraints.max_flops={space.constraints['max_flops']:g}: no config can meet it; the "
                          f"cheapest config of the space costs {cheapest_flops:,} FLOPs ({space.flops_convention})")
    if space.constraints["max_params"] is not None and cheapest_params > space.constraints["max_params"]:
        raise ConfigError(f"constraints.max_params={space.constraints['max_params']:g}: no config can meet it; "
                          f"the smallest config of the space has {cheapest_params:,} parameters")
    return measured


def summarize(space: SearchSpace) -> SpaceSummary:
    measured = check_budget(space)
    flops = [c.flops for _, c in measured]
    params = [c.params for _, c in measured]
    refs = {}
    bb = space.backbone_combos()[0]
    for placement in REFERENCE_PLACEMENTS:
        arch = space.reference_config(placement, bb)
        if space.contains(arch):
            cost = measure_arch(arch, space.input_shape(), space.flops_convention)
            refs[placement] = (within_budget(space, cost), cost)
        else:
            refs[placement] = (False, None)
    return SpaceSummary(space.size(), (min(flops), max(flops)), (min(params), max(params)), refs)


def trials_line(space: SearchSpace) -> str:
    """How the trials run: how many at once, each one's CPU/GPU share, device and precision.

    >>> from mrla_nas.space import load_space
    >>> trials_line(load_space("search_spaces/tiny.yaml", check_paths=False))
    '2 at once, each 1 CPU, device auto (the CPU: no GPU share), fp32'
    """
    res, proxy = space.trial_resources(), space.proxy
    share = f" + {res['gpu']:g} GPU" if res["gpu"] else ""
    device = proxy["device"] + (" (the CPU: no GPU share)" if proxy["device"] == "auto" and not res["gpu"] else "")
    return (f"{space.search['concurrency']} at once, each {res['cpu']:g} CPU{share}, device {device}, "
            f"{proxy['precision']}" + (", compiled" if proxy["compile"] else ""))


def latency_label(space) -> str:
    """What a latency figure of this space is: the metric, the step, the batch and input, the threads."""
    lat = space.latency
    step = "training step (forward, backward, SGD step)" if lat["mode"] == "train_step" else "inference (forward, eval)"
    ref = space.latency_reference().summary()
    what = (f"ratio to {ref} (the space's first backbone without MRLA), timed interleaved in one process"
            if lat["metric"] == "ratio"
            else "milliseconds per step")
    return (f"{what}; one {step} at batch {lat['batch_size']}, {lat['resolution']} px, {lat['threads']} "
            f"thread{'s' if lat['threads'] != 1 else ''}, median of {lat['rounds']} rounds")


def format_summary(space: SearchSpace, s: SpaceSummary) -> str:
    budget = ", ".join(f"{k} <= {v:,.0f}" for k, v in space.constraints.items() if v is not None) or "none"
    lines = [f"space {space.name}: valid",
             f"  distinct architectures: {s.size:,}",
             f"  FLOPs ({space.flops_convention}, input {space.input_shape()[1:]}): "
             f"{s.flops_range[0]:,} .. {s.flops_range[1]:,}",
             f"  params: {s.params_range[0]:,} .. {s.params_range[1]:,}",
             f"  budget: {budget}",
             f"  trials: {trials_line(space)}",
             *([f"  latency: {latency_label(space)}, measured by the driver on {space.latency['device']}"]
               if "latency" in space.objectives else []),
             "  reference placements (paper heads and projection, first backbone choice):"]
    for name, (ok, cost) in s.references.items():
        label = {"none": "no MRLA", "light": "light everywhere", "base": "base everywhere"}[name]
        if cost is None:
            lines.append(f"    {label:18s} not in the space")
        else:
            lines.append(f"    {label:18s} {'inside' if ok else 'over budget':11s} "
                         f"{cost.flops:>14,} FLOPs {cost.params:>11,} params")
    return "\n".join(lines)
