"""Pareto front, hypervolume, knee, and selection for export."""
import numpy as np
import pandas as pd
import pytest

from mrla_nas.pareto import front_candidates, hypervolume_2d, knee_index, non_dominated, pareto

MODES = ["max", "min"]


def _brute_force(points):
    keep = []
    for i, p in enumerate(points):
        dominated = any((q[0] >= p[0] and q[1] <= p[1]) and (q[0] > p[0] or q[1] < p[1]) for q in points)
        keep.append(not dominated)
    return keep


@pytest.mark.parametrize("seed", range(20))
def test_front_matches_brute_force_with_ties_and_duplicates(seed):
    rng = np.random.RandomState(seed)
    pts = np.c_[rng.randint(0, 6, 40) / 5, rng.randint(0, 6, 40)].astype(float)  # coarse grid: many ties
    pts = np.r_[pts, pts[:5]]  # exact duplicates
    assert non_dominated(pts, MODES).tolist() == _brute_force(pts.tolist())


def test_hypervolume_hand_computed():
    ref = (0.0, 4.0)
    assert hypervolume_2d(np.array([[0.5, 2.0]]), MODES, ref) == pytest.approx(1.0)
    assert hypervolume_2d(np.array([[0.5, 2.0], [0.8, 3.0]]), MODES, ref) == pytest.approx(1.3)
    # a dominated point and a duplicate add nothing; a point beyond the reference adds nothing
    assert hypervolume_2d(np.array([[0.5, 2.0], [0.8, 3.0], [0.4, 3.0], [0.5, 2.0], [0.9, 5.0]]), MODES, ref) \
        == pytest.approx(1.3)
    assert hypervolume_2d(np.zeros((0, 2)), MODES, ref) == 0.0


def test_knee_is_the_bend():
    pts = np.array([[0.5, 1.0], [0.9, 2.0], [0.92, 10.0]])
    assert knee_index(pts, MODES) == 1


def _table(rows):
    return pd.DataFrame(rows, columns=["trial_id", "status", "key", "accuracy", "flops", "fidelity"])


def test_early_stopped_trials_never_reach_the_front():
    df = _table([[0, "complete", "a", 0.80, 100, 1.0],
                 [1, "stopped", "b", 0.95, 50, 0.5],      # better on both, but half-trained
                 [2, "complete", "c", 0.85, 200, 1.0],
                 [3, "infeasible", "d", None, 10, 0.0],
                 [4, "complete", "a", 0.80, 100, 1.0]])  # the same network again
    front, hv, ref, knee = pareto(df, max_flops=400)
    assert front["trial_id"].tolist() == [0, 2]
    assert 1 not in front_candidates(df)["trial_id"].tolist()
    assert ref == (0.0, 400.0) and hv == pytest.approx((0.8 * 300 + 0.05 * 200) / 400)  # normalised
