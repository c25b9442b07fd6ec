"""The successive-halving rule on hand-made rungs: dominated and non-dominated sets, ties, a rung
smaller than eta, and what moasha keeps that asha stops."""
import numpy as np
import pytest

from mrla_nas.objectives.halving import SuccessiveHalving, crowding_distance, rank_order
from mrla_nas.space.schema import rungs_for

MODES = ["max", "min"]


def _decide_all(rule, epoch, results):
    return [rule.decide(i, epoch, v) for i, v in enumerate(results)]


def test_rungs_from_grace_period_and_eta():
    assert rungs_for(6, 1, 2) == [1, 2, 4]
    assert rungs_for(9, 1, 3) == [1, 3] and rungs_for(27, 3, 3) == [3, 9]
    assert rungs_for(2, 2, 2) == [] and rungs_for(8, explicit=[8, 2, 2, 5]) == [2, 5]


def test_a_dominated_newcomer_stops_a_non_dominated_one_continues():
    rule = SuccessiveHalving([1], eta=2, modes=MODES)
    assert rule.decide(0, 1, [0.80, 100])          # alone at the rung: continues, as in ASHA
    assert not rule.decide(1, 1, [0.70, 150])      # dominated by trial 0: bottom half of 2
    assert rule.decide(2, 1, [0.60, 20])           # cheaper than all: on the first front, an extreme
    assert not rule.decide(3, 1, [0.50, 200])      # dominated by everything
    assert rule.decide(4, 1, [0.90, 300])          # most accurate: an extreme of the first front


def test_a_rung_smaller_than_eta_keeps_only_its_best():
    rule = SuccessiveHalving([2], eta=4, modes=MODES)
    assert rule.decide(0, 2, [0.5, 10])
    assert not rule.decide(1, 2, [0.4, 20])        # ceil(2 / 4) = 1: only the first continues
    assert rule.decide(7, 3, [0.1, 999])           # not a rung: always continues


def test_ties_break_by_crowding_distance_then_by_the_earlier_trial():
    # one front of five: the two extremes first, then the least crowded middle point
    pts = np.array([[0.90, 50], [0.80, 20], [0.85, 30], [0.95, 100], [0.70, 10]], dtype=float)
    order = rank_order(pts, MODES)
    assert set(order[:2]) == {3, 4}
    cd = crowding_distance(pts * np.array([-1, 1]))
    middle = [i for i in order[2:]]
    assert [cd[i] for i in middle] == sorted([cd[i] for i in middle], reverse=True)
    same = np.array([[0.8, 10], [0.8, 10], [0.8, 10]], dtype=float)
    assert rank_order(same, MODES) == [0, 1, 2]  # exact ties: the earlier trial first


def test_moasha_keeps_a_cheap_network_that_asha_stops():
    results = [[0.90, 400], [0.88, 350], [0.85, 300], [0.60, 20]]  # the last: cheap, less accurate
    asha = SuccessiveHalving([1], eta=2, modes=["max"])
    moasha = SuccessiveHalving([1], eta=2, modes=MODES)
    assert _decide_all(asha, 1, [[r[0]] for r in results])[-1] is False
    assert _decide_all(moasha, 1, results)[-1] is True


@pytest.mark.parametrize("eta", [2, 3, 4])
def test_a_result_that_dominates_every_earlier_one_always_continues(eta):
    rng = np.random.default_rng(eta)
    rule = SuccessiveHalving([1], eta=eta, modes=MODES)
    pts = np.c_[rng.random(40) * 0.8, 10 + rng.random(40) * 100]
    _decide_all(rule, 1, pts.tolist())
    assert rule.decide(99, 1, [0.99, 1.0])  # better than all 40 on both objectives
    assert not rule.decide(100, 1, [0.0, 1000.0])  # worse than all
