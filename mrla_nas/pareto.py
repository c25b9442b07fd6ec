"""Pareto fronts, hypervolume and the knee point of accuracy (max) against FLOPs (min).

Written here rather than taken from Optuna because Optuna's front and hypervolume helpers are
private (``optuna._hypervolume``, ``optuna.study._multi_objective``) and work on trials, while the
front is built from the trials table (full-fidelity rows only; see ``front_candidates``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

DEFAULT_OBJECTIVES = {"accuracy": "max", "flops": "min"}


def _as_minimisation(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if m == "max" else 1.0 for m in modes])
    return values * signs


def non_dominated(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (ties: equal points are all kept).

    >>> non_dominated(np.array([[0.9, 10], [0.8, 20], [0.95, 30]]), ["max", "min"]).tolist()
    [True, False, True]
    """
    v = _as_minimisation(np.asarray(values, dtype=float), modes)
    if len(v) == 0:
        return np.zeros(0, dtype=bool)
    le = (v[:, None, :] <= v[None, :, :]).all(-1)   # le[i, j]: i is no worse than j everywhere
    lt = (v[:, None, :] < v[None, :, :]).any(-1)    # lt[i, j]: i is better somewhere
    dominated = (le & lt).any(0)
    return ~dominated


def hypervolume_2d(values: np.ndarray, modes: Sequence[str], reference: Sequence[float]) -> float:
    """Area dominated by the points and bounded by ``reference`` (in the objectives' own units).

    >>> hypervolume_2d(np.array([[0.5, 2.0]]), ["max", "min"], (0.0, 4.0))
    1.0
    """
    v = _as_minimisation(np.asarray(values, dtype=float).reshape(-1, 2), modes)
    r = _as_minimisation(np.asarray(reference, dtype=float).reshape(1, 2), modes)[0]
    v = v[(v < r).all(1)]
    if len(v) == 0:
        return 0.0
    v = v[np.lexsort((v[:, 1], v[:, 0]))]  # by first objective, then second
    area, best_second = 0.0, r[1]
    for a, b in v:
        if b < best_second:
            area += (r[0] - a) * (best_second - b)
            best_second = b
    return float(area)


def knee_index(values: np.ndarray, modes: Sequence[str]) -> int:
    """The front point farthest from the line between the front's two extremes (normalised axes)."""
    v = _as_minimisation(np.asarray(values, dtype=float), modes)
    if len(v) <= 2:
        return int(np.argmin(v[:, 0])) if len(v) else -1
    lo, hi = v.min(0), v.max(0)
    n = (v - lo) / np.where(hi > lo, hi - lo, 1)
    a, b = n[np.argmin(n[:, 0])], n[np.argmin(n[:, 1])]
    d = b - a
    dist = np.abs(d[0] * (n[:, 1] - a[1]) - d[1] * (n[:, 0] - a[0])) / max(np.hypot(*d), 1e-12)
    return int(np.argmax(dist))


def front_candidates(trials: pd.DataFrame) -> pd.DataFrame:
    """Rows allowed on the front: completed, feasible, trained to full fidelity (early-stopped trials
    keep a partial accuracy that must not compete with fully trained ones), one row per network
    (the first trial of a canonical key; a re-proposed network reuses its result)."""
    if trials.empty:
        return trials
    ok = (trials["status"] == "complete") & (trials["fidelity"] >= 1.0) & trials["accuracy"].notna()
    cand = trials[ok]
    return cand.drop_duplicates("key", keep="first") if "key" in cand else cand


def reference_point(trials: pd.DataFrame, max_flops: Optional[float] = None) -> Tuple[float, float]:
    """(accuracy 0, FLOPs budget) or, without a budget, 1.1 x the largest FLOPs measured."""
    if max_flops:
        return (0.0, float(max_flops))
    return (0.0, float(trials["flops"].max()) * 1.1 if len(trials) else 1.0)


def pareto(trials: pd.DataFrame, objectives: Dict[str, str] = DEFAULT_OBJECTIVES,
           max_flops: Optional[float] = None):
    """(front rows sorted by FLOPs, hypervolume, reference point, knee row label or None).

    The hypervolume is normalised by the reference box (accuracy 0..1 x FLOPs 0..reference): the
    fraction of that box the front dominates, in [0, 1], comparable across runs of a space.
    """
    cand = front_candidates(trials)
    keys = [k for k in ("accuracy", "flops") if k in objectives]
    modes = [objectives[k] for k in keys]
    if cand.empty:
        return cand, 0.0, reference_point(trials, max_flops), None
    mask = non_dominated(cand[keys].to_numpy(float), modes)
    front = cand[mask].sort_values("flops")
    ref = reference_point(trials, max_flops)
    hv = hypervolume_2d(front[keys].to_numpy(float), modes, ref) / (1.0 * ref[1])
    knee = front.index[knee_index(front[keys].to_numpy(float), modes)]
    return front, hv, ref, knee
