"""Pareto fronts, hypervolume and the knee point over the space's objectives: accuracy (max), FLOPs
(min) and, when the space asks for it, params (min).

Non-dominance and hypervolume come from moocore (exact in any dimension: O(n log n) in 2-D and 3-D);
Optuna's own helpers are private (``optuna._hypervolume``) and work on trials, while the front here
is built from the trials table (full-fidelity rows only; see ``front_candidates``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import moocore
import numpy as np
import pandas as pd

from ..rundir.records import COMPLETE

DEFAULT_OBJECTIVES = {"accuracy": "max", "flops": "min"}


def non_dominated(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (ties: equal points are all kept).

    >>> non_dominated(np.array([[0.9, 10], [0.8, 20], [0.95, 30]]), ["max", "min"]).tolist()
    [True, False, True]
    >>> non_dominated(np.array([[0.9, 10, 5], [0.9, 20, 1], [0.8, 20, 5]]), ["max", "min", "min"]).tolist()
    [True, True, False]
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(v, maximise=[m == "max" for m in modes], keep_weakly=True))


def hypervolume(values: np.ndarray, modes: Sequence[str], reference: Sequence[float]) -> float:
    """Volume dominated by the points and bounded by ``reference`` (in the objectives' own units).

    >>> hypervolume(np.array([[0.5, 2.0]]), ["max", "min"], (0.0, 4.0))
    1.0
    >>> hypervolume(np.array([[0.5, 2.0, 1.0]]), ["max", "min", "min"], (0.0, 4.0, 3.0))
    2.0
    """
    v = np.asarray(values, dtype=float).reshape(-1, len(modes))
    maximise = [m == "max" for m in modes]
    ref = np.asarray(reference, dtype=float)
    inside = np.all([(v[:, i] > ref[i]) if mx else (v[:, i] < ref[i]) for i, mx in enumerate(maximise)], axis=0)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(v[inside], ref=ref, maximise=maximise))


def knee_index(values: np.ndarray, modes: Sequence[str]) -> int:
    """The front point farthest from the hyperplane through the front's extremes (the best point of
    each objective), on axes normalised to the front's range: in 2-D, the point farthest from the line
    joining the two ends of the front."""
    v = np.asarray(values, dtype=float) * np.array([-1.0 if m == "max" else 1.0 for m in modes])
    if len(v) <= 2:
        return int(np.argmin(v[:, 0])) if len(v) else -1
    lo, hi = v.min(0), v.max(0)
    n = (v - lo) / np.where(hi > lo, hi - lo, 1)
    extremes = np.unique(n[np.argmin(n, axis=0)], axis=0)
    if len(extremes) < 2:  # one point is best everywhere: it is the knee
        return int(np.argmin(np.linalg.norm(n, axis=1)))
    # distance to the affine hull of the extremes: the part of (x - e0) outside their span
    basis = np.linalg.svd(extremes[1:] - extremes[0], full_matrices=False)[2]
    rel = n - extremes[0]
    residual = rel - (rel @ basis.T) @ basis
    return int(np.argmax(np.linalg.norm(residual, axis=1)))


def front_candidates(trials: pd.DataFrame) -> pd.DataFrame:
    """Rows allowed on the front: completed, feasible, trained to full fidelity (early-stopped trials
    keep a partial accuracy that must not compete with fully trained ones), one row per network
    (the first trial of a canonical key; a re-proposed network reuses its result)."""
    if trials.empty:
        return trials
    ok = (trials["status"] == COMPLETE) & (trials["fidelity"] >= 1.0) & trials["accuracy"].notna()
    cand = trials[ok]
    return cand.drop_duplicates("key", keep="first") if "key" in cand else cand


def reference_point(trials: pd.DataFrame, objectives: Dict[str, str] = DEFAULT_OBJECTIVES,
                    budgets: Optional[Dict[str, Optional[float]]] = None) -> Tuple[float, ...]:
    """Accuracy 0, and for each cost objective its budget or, without one, 1.1 x the largest measured.

    >>> reference_point(pd.DataFrame({"flops": [10.0], "params": [5.0]}), {"accuracy": "max", "flops": "min",
    ...                 "params": "min"}, {"max_flops": 40.0})
    (0.0, 40.0, 5.5)
    """
    budgets = budgets or {}
    ref = []
    for name in objectives:
        if name == "accuracy":
            ref.append(0.0)
        elif budgets.get(f"max_{name}"):
            ref.append(float(budgets[f"max_{name}"]))
        else:
            ref.append(float(trials[name].max()) * 1.1 if len(trials) and trials[name].notna().any() else 1.0)
    return tuple(ref)


def pareto(trials: pd.DataFrame, objectives: Dict[str, str] = DEFAULT_OBJECTIVES,
           budgets: Optional[Dict[str, Optional[float]]] = None):
    """(front rows sorted by the first cost objective (FLOPs, or params, or latency), hypervolume,
    reference point, knee row label or None) over every objective of ``objectives`` (its order is
    the order of the reference point).

    The hypervolume is normalised by the reference box (accuracy 0..1 x each cost 0..its reference):
    the fraction of that box the front dominates, in [0, 1], comparable across runs of a space.
    """
    keys = list(objectives)
    modes = [objectives[k] for k in keys]
    cand = front_candidates(trials)
    ref = reference_point(trials, objectives, budgets)
    if cand.empty:
        return cand, 0.0, ref, None
    values = cand[keys].to_numpy(float)
    first_cost = next(k for k in keys if k != "accuracy")
    front = cand[non_dominated(values, modes)].sort_values(first_cost)
    box = np.prod([1.0 - r if m == "max" else r for r, m in zip(ref, modes)])
    hv = hypervolume(front[keys].to_numpy(float), modes, ref) / box
    knee = front.index[knee_index(front[keys].to_numpy(float), modes)]
    return front, hv, ref, knee
