"""Pareto front, hypervolume, knee, and selection for export."""
import numpy as np
import pandas as pd
import pytest

from mrla_nas.objectives.pareto import front_candidates, hypervolume, knee_index, non_dominated, pareto

MODES = ["max", "min"]


def _brute_force(points, modes):
    sign = [1 if m == "max" else -1 for m in modes]  # larger is better after the sign

    def dominates(q, p):
        return all(s * a >= s * b for s, a, b in zip(sign, q, p)) and any(s * a > s * b for s, a, b in zip(sign, q, p))
    return [not any(dominates(q, p) for q in points) for p in points]


@pytest.mark.parametrize("modes", [MODES, ["max", "min", "min"]])
@pytest.mark.parametrize("seed", range(20))
def test_front_matches_brute_force_with_ties_and_duplicates(seed, modes):
    rng = np.random.RandomState(seed)
    pts = np.c_[rng.randint(0, 6, 40) / 5, rng.randint(0, 6, (40, len(modes) - 1))].astype(float)  # many ties
    pts = np.r_[pts, pts[:5]]  # exact duplicates
    assert non_dominated(pts, modes).tolist() == _brute_force(pts.tolist(), modes)


def _monte_carlo_volume(points, modes, ref, n=200_000, seed=0):
    rng = np.random.RandomState(seed)
    lo = np.array([r if m == "max" else 0.0 for r, m in zip(ref, modes)])
    hi = np.array([1.0 if m == "max" else r for r, m in zip(ref, modes)])
    samples = lo + rng.rand(n, len(modes)) * (hi - lo)
    sign = np.array([1 if m == "max" else -1 for m in modes])
    covered = np.zeros(n, dtype=bool)
    for p in points:
        covered |= np.all(sign * p >= sign * samples, axis=1)
    return covered.mean() * np.prod(hi - lo)


def test_hypervolume_in_three_objectives_against_sampling():
    modes, ref = ["max", "min", "min"], (0.0, 10.0, 8.0)
    rng = np.random.RandomState(3)
    pts = np.c_[rng.rand(12), rng.rand(12) * 10, rng.rand(12) * 8]
    exact = hypervolume(pts, modes, ref)
    assert exact == pytest.approx(_monte_carlo_volume(pts, modes, ref), rel=0.02)
    assert hypervolume(pts[non_dominated(pts, modes)], modes, ref) == pytest.approx(exact)


def test_three_objective_front_keeps_what_two_objectives_would_drop():
    df = pd.DataFrame({"trial_id": [0, 1, 2], "status": "complete", "key": ["a", "b", "c"], "fidelity": 1.0,
                       "accuracy": [0.80, 0.80, 0.70], "flops": [100, 120, 130], "params": [50, 10, 60]})
    two, *_ = pareto(df, {"accuracy": "max", "flops": "min"})
    three, hv, ref, knee = pareto(df, {"accuracy": "max", "flops": "min", "params": "min"}, {"max_flops": 200})
    assert two["trial_id"].tolist() == [0] and three["trial_id"].tolist() == [0, 1]
    assert ref == (0.0, 200.0, pytest.approx(66.0)) and 0 < hv < 1 and knee in three.index


def test_hypervolume_hand_computed():
    ref = (0.0, 4.0)
    assert hypervolume(np.array([[0.5, 2.0]]), MODES, ref) == pytest.approx(1.0)
    assert hypervolume(np.array([[0.5, 2.0], [0.8, 3.0]]), MODES, ref) == pytest.approx(1.3)
    # a dominated point and a duplicate add nothing; a point beyond the reference adds nothing
    assert hypervolume(np.array([[0.5, 2.0], [0.8, 3.0], [0.4, 3.0], [0.5, 2.0], [0.9, 5.0]]), MODES, ref) \
        == pytest.approx(1.3)
    assert hypervolume(np.zeros((0, 2)), MODES, ref) == 0.0


def test_knee_is_the_bend():
    pts = np.array([[0.5, 1.0], [0.9, 2.0], [0.92, 10.0]])
    assert knee_index(pts, MODES) == 1
    # in 3-D: the extremes are the best point of each objective; the knee is the one farthest from
    # the plane through them, here the point that is nearly best everywhere
    pts3 = np.array([[0.5, 1.0, 1.0], [0.95, 9.0, 9.0], [0.6, 9.0, 0.5], [0.9, 2.0, 2.0]])
    assert knee_index(pts3, ["max", "min", "min"]) == 3


def _table(rows):
    return pd.DataFrame(rows, columns=["trial_id", "status", "key", "accuracy", "flops", "fidelity"])


def test_early_stopped_trials_never_reach_the_front():
    df = _table([[0, "complete", "a", 0.80, 100, 1.0],
                 [1, "stopped", "b", 0.95, 50, 0.5],      # better on both, but half-trained
                 [2, "complete", "c", 0.85, 200, 1.0],
                 [3, "infeasible", "d", None, 10, 0.0],
                 [4, "complete", "a", 0.80, 100, 1.0]])  # the same network again
    front, hv, ref, knee = pareto(df, budgets={"max_flops": 400})
    assert front["trial_id"].tolist() == [0, 2]
    assert 1 not in front_candidates(df)["trial_id"].tolist()
    assert ref == (0.0, 400.0) and hv == pytest.approx((0.8 * 300 + 0.05 * 200) / 400)  # normalised
