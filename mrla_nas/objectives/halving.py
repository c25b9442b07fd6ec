"""What to stop: asynchronous successive halving over several objectives (MO-ASHA, Schmucker et al.
2021; Syne Tune's ``MOASHA``), as plain code shared by the live Ray scheduler and the table replay.

Rungs are epochs (``grace_period * eta**k`` below the proxy's epochs, or an explicit list: the space's
:func:`~mrla_nas.space.schema.rungs_for`). When a
trial reaches a rung, it is ranked among every result recorded at that rung so far and continues
only if it is in the top ``ceil(n / eta)``; the first trials at a rung always continue, as in ASHA.

The ranking (``moasha``): non-dominated sorting over (accuracy at that rung, FLOPs, and params when
it is an objective); within a front, NSGA-II's crowding distance, largest first, then the earlier
trial. Crowding distance rather than MO-ASHA's epsilon-net: it needs no epsilon on objectives of
different units, and it ranks each front's extremes first, so the cheapest and the most accurate
network of a rung are the last to be stopped. ``asha`` is the same rule on accuracy alone (what
Ray's ASHA does: a cheap network with lower accuracy is stopped as readily as an expensive one).

>>> rule = SuccessiveHalving(rungs=[1, 3], eta=2, modes=["max", "min"])
>>> rule.decide(0, 1, [0.5, 100.0]), rule.decide(1, 1, [0.4, 200.0]), rule.decide(2, 1, [0.6, 50.0])
(True, False, True)
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..space.schema import rungs_for
from .pareto import non_dominated


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point of one front (inf at each objective's extremes).
    Equal points get equal distances (computed on the distinct points), so ties stay ties."""
    unique, inverse = np.unique(values, axis=0, return_inverse=True)
    n, m = unique.shape
    if n <= 2:
        return np.full(len(values), math.inf if n == 2 else 0.0)
    out = np.zeros(n)
    for j in range(m):
        order = np.argsort(unique[:, j], kind="stable")
        span = unique[order[-1], j] - unique[order[0], j]
        if span > 0:
            out[order[0]] = out[order[-1]] = math.inf
            out[order[1:-1]] += (unique[order[2:], j] - unique[order[:-2], j]) / span
    return out[inverse.reshape(-1)]


def rank_order(values: np.ndarray, modes: Sequence[str]) -> List[int]:
    """Row indices best first: non-dominated fronts in turn, each by crowding distance (largest first),
    ties by index (the earlier trial).

    >>> rank_order(np.array([[0.9, 10.0], [0.8, 20.0], [0.95, 30.0], [0.5, 5.0]]), ["max", "min"])
    [2, 3, 0, 1]
    """
    remaining = list(range(len(values)))
    signs = np.array([-1.0 if m == "max" else 1.0 for m in modes])
    order: List[int] = []
    while remaining:
        sub = values[remaining]
        mask = non_dominated(sub, modes)
        front = [remaining[i] for i in np.flatnonzero(mask)]
        cd = crowding_distance(values[front] * signs)
        order += [front[i] for i in sorted(range(len(front)), key=lambda i: (-cd[i], front[i]))]
        remaining = [r for r, keep in zip(remaining, mask) if not keep]
    return order


class SuccessiveHalving:
    """The stop/continue decisions of one search: results recorded per rung, ranked as described above.

    ``decide(trial, epoch, values)`` is called with a trial's objective values at every epoch it
    reports; it returns True to continue, False to stop (only ever at a rung).
    """

    def __init__(self, rungs: Sequence[int], eta: int, modes: Sequence[str]):
        self.rungs = list(rungs)
        self.eta = eta
        self.modes = list(modes)
        self.recorded: Dict[int, Dict[int, List[float]]] = {r: {} for r in self.rungs}

    def decide(self, trial: int, epoch: int, values: Sequence[float]) -> bool:
        if epoch not in self.recorded:
            return True
        rung = self.recorded[epoch]
        rung[trial] = list(values)
        ids = list(rung)
        order = rank_order(np.array([rung[i] for i in ids], dtype=float), self.modes)
        position = [ids[i] for i in order].index(trial)
        return position < math.ceil(len(ids) / self.eta)


def rule_for(space, epochs: Optional[int] = None) -> Optional[SuccessiveHalving]:
    """The space's early-stopping rule (None for ``scheduler: none``): ``moasha`` ranks on every
    objective, ``asha`` on accuracy alone."""
    kind = space.search["scheduler"]
    if kind == "none":
        return None
    epochs = epochs or space.proxy["epochs"]
    rungs = rungs_for(epochs, space.search["grace_period"], space.search["reduction_factor"], space.search["rungs"])
    modes = list(space.objectives.values()) if kind == "moasha" else ["max"]
    return SuccessiveHalving(rungs, space.search["reduction_factor"], modes)


def rung_values(space, kind: str, accuracy: float, flops: float, params: float,
                latency: Optional[float] = None) -> List[float]:
    """What a rule ranks a trial on: every objective (moasha) or accuracy alone (asha)."""
    if kind == "asha":
        return [accuracy]
    return space.objective_values(accuracy, flops, params, latency)
