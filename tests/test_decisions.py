"""The Proposer (no Ray): a trial budget buys distinct networks; re-proposals of known networks are told
at once, re-proposals of networks in flight wait for them; an exhausted space stops the search."""
import optuna
import pytest
import yaml

from conftest import DATA
from mrla_nas.search.proposer import COMPLETE, FAIL, PRUNED, Outcome, Proposer
from mrla_nas.space import SearchSpace

TINY = yaml.safe_load((DATA.parent.parent / "search_spaces" / "tiny.yaml").read_text())


def _space(**stages):
    data = dict(TINY, proxy=dict(TINY["proxy"], path=str(DATA / "fmnist_slice")))
    if stages:
        data["stages"] = stages
    return SearchSpace.from_dict(data)


def _cost(arch):
    return sum(1000 * (s.form != "none") for s in arch.stages) + 1, 10


def _proposer(space, sampler=None):
    study = optuna.create_study(directions=space.directions(), sampler=sampler or optuna.samplers.RandomSampler(0))
    return study, Proposer(study, space, _cost)


def test_re_proposals_of_finished_networks_are_told_at_once_and_cost_no_budget():
    space = _space(form=["none", "light"])  # 2 stages x 2 forms: 4 networks
    study, p = _proposer(space)
    keys = []
    for i in range(4):
        prop = p.propose()
        keys.append(prop.arch.key())
        p.finish(prop.number, prop.arch.key(), Outcome(COMPLETE, [0.5 + i / 10, float(prop.flops)]))
    assert len(set(keys)) == 4
    assert p.propose() is None and p.exhausted()  # all 4 evaluated: the search stops
    duplicates = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert all(t.state == COMPLETE for t in duplicates)
    for t in duplicates:  # told the recorded values of the original
        original = next(o for o in study.trials if "duplicate_of" not in o.user_attrs
                        and o.user_attrs["arch"] == t.user_attrs["arch"])
        assert t.values == original.values
    assert sum(p.proposed.values()) == len(study.trials)


def test_a_network_in_flight_is_not_trained_twice():
    space = _space(form=["none", "light"])
    study, p = _proposer(space)
    first = [p.propose() for _ in range(3)]  # three in flight
    assert len({f.arch.key() for f in first}) == 3
    fourth = p.propose()                       # the last new network
    assert p.propose() is None                 # nothing new left: every other proposal parks or is known
    parked = {k: v for k, v in p.waiting.items()}
    for f in first + [fourth]:
        told = p.finish(f.number, f.arch.key(), Outcome(COMPLETE, [0.7, float(f.flops)]))
        assert told[0] == f.number and set(told[1:]) == set(parked.get(f.arch.key(), []))
    assert all(t.state == COMPLETE for t in study.trials)  # parked trials were told with their original


def test_outcomes_other_than_complete_are_repeated_for_re_proposals():
    space = _space(form=["none", "light"])
    study, p = _proposer(space)
    for state in (PRUNED, FAIL, PRUNED, FAIL):
        prop = p.propose()
        p.finish(prop.number, prop.arch.key(), Outcome(state))
    assert p.propose() is None
    for t in study.trials:
        if "duplicate_of" in t.user_attrs:
            key = t.user_attrs["duplicate_of"]
            assert t.state == p.known[key].state


def test_a_stuck_sampler_is_given_an_unseen_network():
    class Stuck(optuna.samplers.RandomSampler):  # always proposes "none" everywhere
        def sample_independent(self, study, trial, name, distribution):
            return distribution.choices[0]

    space = _space(form=["none", "light"])
    study, p = _proposer(space, Stuck(seed=0))
    seen = set()
    for _ in range(4):
        prop = p.propose()
        seen.add(prop.arch.key())
        p.finish(prop.number, prop.arch.key(), Outcome(COMPLETE, [0.5, float(prop.flops)]))
    assert len(seen) == 4 and p.propose() is None


def test_a_resumed_proposer_knows_what_the_study_holds():
    space = _space(form=["none", "light"])
    study, p = _proposer(space)
    done = []
    for _ in range(2):
        prop = p.propose()
        done.append(prop.arch.key())
        p.finish(prop.number, prop.arch.key(), Outcome(COMPLETE, [0.5, float(prop.flops)]))
    again = Proposer(study, space, _cost)
    assert set(again.known) == set(done)
    new = {again.propose().arch.key(), again.propose().arch.key()}
    assert not new & set(done) and again.propose() is None


@pytest.mark.parametrize("n", [1, 3])
def test_budget_counts_distinct_networks(n):
    from mrla_nas.rundir.recovery import finished_networks
    space = _space(form=["none", "light"])
    study, p = _proposer(space)
    for _ in range(n):
        prop = p.propose()
        p.finish(prop.number, prop.arch.key(), Outcome(COMPLETE, [0.5, float(prop.flops)]))
    assert finished_networks(study) == n
