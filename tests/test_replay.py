"""Tables and replay: a synthetic table replayed (fast), the live Ray search and the replay taking the
same decisions on the same results, and the table export round trip (slow)."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DATA
from mrla_nas.cli import main
from mrla_nas.analysis.replay import curve_stats, replay
from mrla_nas.search import search
from mrla_nas.space import SearchSpace
from mrla_nas.analysis.benchmark_table import BenchmarkTable, load_table

TINY = yaml.safe_load((DATA.parent.parent / "search_spaces" / "tiny.yaml").read_text())


def _space(**search):
    data = dict(TINY, proxy=dict(TINY["proxy"], path=str(DATA / "fmnist_slice"), epochs=2),
                search=dict(TINY["search"], **search))
    return SearchSpace.from_dict(data)


def _synthetic_table(space, seconds=lambda i: 10.0 + i):
    rows = []
    for i, arch in enumerate(space.enumerate()):
        mrla = sum(s.form != "none" for s in arch.stages)
        for seed in (0, 1):
            for epoch in (1, 2):
                rows.append({"key": arch.key(), "summary": arch.summary(), "arch": arch.to_json(),
                             "flops": 1000 + 100 * mrla + i, "params": 50 + i, "seed": seed, "epoch": epoch,
                             "val_accuracy": 0.5 + 0.1 * mrla + 0.01 * seed + 0.001 * i, "val_loss": 1.0,
                             "train_loss": 1.0, "seconds": seconds(i) / 2})
    return BenchmarkTable(pd.DataFrame(rows), {"space": space.to_dict()})


def test_replay_evaluates_distinct_networks_with_simulated_time():
    space = _space(trials=10, concurrency=2, initial=["none", "light"])
    table = _synthetic_table(space)
    result = replay(table)
    keys = result.keys()
    assert len(keys) == len(set(keys)) == 10
    ends = [t.end for t in result.trials]
    assert ends == sorted(ends)  # in finishing order
    # two slots: the first two start at 0; every later trial starts when one ends
    assert [t.start for t in result.trials[:2]] == [0.0, 0.0]
    assert all(t.start in {0.0, *ends} for t in result.trials)
    first = result.trials[0]
    assert first.accuracy == pytest.approx(0.505)  # mean over the table's two seeds, "none" everywhere first
    assert first.end == pytest.approx(2 * 2 * 5.0 + 0)  # 2 seeds x 2 epochs x seconds/2 (network 0)


def test_replay_of_the_whole_space_stops_when_it_is_exhausted_and_repeats_differ():
    space = _space(trials=40, concurrency=1, initial=[], sampler="random")
    table = _synthetic_table(space)
    a, b = replay(table, seed=0), replay(table, seed=1)
    assert len(a.trials) == len(b.trials) == space.size() == 25
    assert a.keys() != b.keys() and set(a.keys()) == set(b.keys())
    assert replay(table, seed=0).keys() == a.keys()  # deterministic under its seed
    curve = a.hypervolume_curve()
    assert all(x <= y + 1e-12 for x, y in zip(curve, curve[1:]))  # a front only grows
    mean, low, high = curve_stats([a.hypervolume_curve(), b.hypervolume_curve()], 30)
    assert len(mean) == 30 and (low <= mean).all() and (mean <= high).all()


def test_replay_seed_set_selects_table_seeds():
    space = _space(trials=3, concurrency=1, initial=["none"])
    table = _synthetic_table(space)
    assert replay(table, seeds=[1]).trials[0].accuracy == pytest.approx(0.51)
    assert replay(table, seeds=[0]).trials[0].accuracy == pytest.approx(0.50)


@pytest.mark.slow
@pytest.mark.ray
def test_live_search_and_replay_take_the_same_decisions(tmp_path, capsys):
    data = dict(TINY, proxy=dict(TINY["proxy"], path=str(DATA / "fmnist_slice")),
                search=dict(TINY["search"], concurrency=1, sampler="tpe", initial=["none", "light"]))
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    live = search(path, runs_dir=tmp_path / "runs", trials=10, progress=False)
    assert main(["table", str(live.run_dir), "-o", str(tmp_path / "table.csv")]) == 0
    table = load_table(tmp_path / "table.csv")
    assert table.provenance["networks"] == 10 and table.provenance["seeds"] == [0]
    assert "torch" in table.provenance["versions"] and table.provenance["machine"]["cpus"]
    again = replay(table, space=SearchSpace.from_dict(data), trials=10)
    live_order = live.trials.sort_values("trial_id")["key"].tolist()
    assert again.keys() == live_order  # the same proposals, in the same order, on the same results
    live_values = {r["key"]: r["accuracy"] for _, r in live.trials.iterrows()}
    assert all(t.accuracy == pytest.approx(live_values[t.key]) for t in again.trials)
    header = (tmp_path / "table.csv").read_text().splitlines()[1]
    assert json.loads(header[2:])["recipe"]["epochs"] == 1
    assert np.isfinite(again.hypervolume_curve()).all()


def test_replay_with_early_stopping_prunes_at_rungs_and_spends_less():
    space = _space(trials=25, concurrency=2, initial=[], sampler="random")
    table = _synthetic_table(space)
    full = replay(table, seed=0)
    for kind in ("asha", "moasha"):
        stopped = replay(table, seed=0, scheduler=kind)
        pruned = [t for t in stopped.trials if t.outcome.state.name == "PRUNED"]
        assert pruned and all(t.epochs == 1 and t.outcome.stopped_epoch == 1 for t in pruned)
        assert all(t.accuracy is None for t in pruned)  # a stopped trial never reaches the front
        assert stopped.compute_curve()[0][-1] < full.compute_curve()[0][-1]
        assert len(stopped.trials) == 25


@pytest.mark.slow
@pytest.mark.ray
def test_live_moasha_and_replay_stop_the_same_trials(tmp_path):
    def space_file(name, **search):
        data = dict(TINY, name=name, proxy=dict(TINY["proxy"], path=str(DATA / "fmnist_slice"), epochs=3,
                                                train_size=300, val_size=200),
                    search=dict(TINY["search"], concurrency=1, initial=[], **search))
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path, data

    full_path, _ = space_file("all", sampler="brute_force", scheduler="none")
    full = search(full_path, runs_dir=tmp_path / "runs", trials=25, progress=False)
    table = load_table(main(["table", str(full.run_dir), "-o", str(tmp_path / "t.csv")]) or tmp_path / "t.csv")
    assert table.provenance["complete"]
    live_path, data = space_file("mo", sampler="tpe", scheduler="moasha")
    live = search(live_path, runs_dir=tmp_path / "runs", trials=10, progress=False)
    again = replay(table, space=SearchSpace.from_dict(data), trials=10)
    live_rows = live.trials.sort_values("trial_id")
    assert again.keys() == live_rows["key"].tolist()
    assert [ReplayStatus(t) for t in again.trials] == live_rows["status"].tolist()
    assert (live_rows["status"] == "stopped").any()


def ReplayStatus(t):
    from mrla_nas.analysis.replay import ReplayResult
    return ReplayResult._status(t)


def test_a_replay_on_latency_reads_the_tables_latency_columns():
    from mrla_nas.errors import ConfigError

    space = _space(trials=12, concurrency=2, initial=["none", "light"])
    table = _synthetic_table(space)
    mrla = table.rows["summary"].str.count("L") + table.rows["summary"].str.count("B")
    timed = table.rows.assign(latency_ratio=1.0 + 0.2 * mrla, latency_ms=10.0 * (1.0 + 0.2 * mrla),
                              latency_reference_ms=10.0, latency_spread=0.01)
    data = dict(space.to_dict(), objectives={"accuracy": "max", "latency": "min"})
    timed_space = SearchSpace.from_dict(data)
    with pytest.raises(ConfigError, match=r"^objectives\.latency: this table has no latency measurements"):
        replay(table, timed_space)
    result = replay(BenchmarkTable(timed, table.provenance), timed_space)
    frame = result.frame()
    assert frame["latency"].notna().all() and frame["latency"].min() == 1.0
    by_key = timed.drop_duplicates("key").set_index("key")["latency_ratio"]
    assert all(t.latency == by_key[t.key] for t in result.trials)
    assert result.hypervolume_curve()[-1] > 0
