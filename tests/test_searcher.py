"""The searcher between Ray Tune and the Optuna study (no Ray started): what each trial outcome tells
Optuna, with two and three objectives, and a tell Optuna refuses failing loudly."""
import optuna
import yaml

from conftest import DATA
from mrla_nas.search.samplers import make_sampler
from mrla_nas.rundir.files import freeze_space, read_record
from mrla_nas.rundir.study import open_study
from mrla_nas.rundir.trials_table import trials_table
from mrla_nas.search.tune_searcher import StudySearcher
from mrla_nas.space import SearchSpace

SPACE = yaml.safe_load((DATA.parent.parent / "search_spaces" / "tiny.yaml").read_text())


def _searcher(tmp_path, objectives=None, study_space=None):
    data = dict(SPACE, proxy=dict(SPACE["proxy"], path=str(DATA / "fmnist_slice")))
    if objectives:
        data["objectives"] = objectives
    space = SearchSpace.from_dict(data)
    run = tmp_path / "run"
    (run / "trials").mkdir(parents=True)
    freeze_space(run, space)
    # the space's own seeded sampler, as a search opens it: Optuna's default one is unseeded, and two
    # of its proposals in a 25-network space were the same network about one run in 25
    study = open_study(run, make_sampler(space), space=study_space or space)
    return space, run, study, StudySearcher(space, study, run)


def _result(config, accuracy):
    return {"accuracy": accuracy, "flops": config["flops"], "params": config["params"]}


def test_three_objectives_are_told_as_three_values(tmp_path):
    objectives = {"accuracy": "max", "flops": "min", "params": "min"}
    space, run, study, searcher = _searcher(tmp_path, objectives)
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    for i, config in enumerate(configs):
        searcher.on_trial_complete(f"t{i}", _result(config, 0.5 + i / 10))
    trials = study.get_trials()
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)  # re-proposals too
    by_number = {t.number: t for t in trials}
    assert by_number[configs[2]["trial_number"]].values == [0.7, configs[2]["flops"], configs[2]["params"]]
    assert study.metric_names == ["accuracy", "flops", "params"]


def test_a_refused_tell_is_recorded_failed_with_the_reason(tmp_path, capsys):
    # the defect: a 3-objective space told into a 2-direction study; Optuna refuses every tell
    three = {"accuracy": "max", "flops": "min", "params": "min"}
    space, run, study, _ = _searcher(tmp_path, study_space=SearchSpace.from_dict(
        dict(SPACE, proxy=dict(SPACE["proxy"], path=str(DATA / "fmnist_slice")))))
    space3 = SearchSpace.from_dict(dict(SPACE, objectives=three, proxy=dict(SPACE["proxy"], path=str(DATA / "fmnist_slice"))))
    searcher = StudySearcher(space3, study, run)
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", _result(config, 0.5))
    assert study.get_trials()[0].state == optuna.trial.TrialState.FAIL  # never left RUNNING
    rec = read_record(run, 0)
    assert rec["status"] == "failed" and "Optuna did not accept the result" in rec["error"]
    assert trials_table(run).loc[0, "status"] == "failed"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mrla-nas: trial 0 recorded failed")
    assert searcher.tell_failures == 1


def test_nan_accuracy_is_a_failure_not_a_value(tmp_path):
    space, run, study, searcher = _searcher(tmp_path)
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", _result(config, float("nan")))
    assert study.get_trials()[0].state == optuna.trial.TrialState.FAIL
    assert "not all finite" in read_record(run, 0)["error"]


def test_over_budget_is_pruned_and_errors_fail(tmp_path):
    space, run, study, searcher = _searcher(tmp_path)
    a, b = searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", {"infeasible": 1, "flops": a["flops"], "params": a["params"]})
    searcher.on_trial_complete("b", None, error=True)
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL]
    assert study.get_trials()[0].user_attrs["flops"] == a["flops"]
