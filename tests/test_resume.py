"""Resume bookkeeping for each moment a SIGKILL can fall within a trial (fast: no Ray started)."""
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import DATA
from mrla_nas.arch import arch_from_dict
from mrla_nas.rundir.files import freeze_space, record_path, write_json_atomic
from mrla_nas.rundir.study import open_study
from mrla_nas.rundir.trials_table import trials_table
from mrla_nas.rundir.recovery import recover_interrupted as _recover_interrupted
from mrla_nas.rundir.study_attrs import interrupted_trials
from mrla_nas.search.samplers import make_sampler
from mrla_nas.space import SearchSpace

SPACES = Path(__file__).parent.parent / "search_spaces"


def _run(tmp_path):
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["proxy"]["path"] = str(DATA / "fmnist_slice")
    space = SearchSpace.from_dict(data)
    run = tmp_path / "run"
    (run / "trials").mkdir(parents=True)
    freeze_space(run, space)
    return space, run, open_study(run, make_sampler(space), space=space)


def _started(study, space):
    """A RUNNING trial whose config has been sampled, as the define-by-run leaves it."""
    trial = study.ask()
    return trial, space.sample(trial)


def test_each_kill_window_is_recovered(tmp_path):
    space, run, study = _run(tmp_path)
    t_sampled, arch_sampled = _started(study, space)       # killed while its FLOPs were measured
    t_running, arch_running = _started(study, space)       # killed while it trained
    t_running.set_user_attr("arch", arch_running.to_dict())
    write_json_atomic(record_path(run, t_running.number),
                      {"trial_id": t_running.number, "arch": arch_running.to_dict(), "key": arch_running.key(),
                       "status": "running", "history": [{"epoch": 1, "val_accuracy": 0.3}], "params": 1, "flops": 2})
    t_done, arch_done = _started(study, space)             # killed after its record, before Optuna's tell
    write_json_atomic(record_path(run, t_done.number),
                      {"trial_id": t_done.number, "arch": arch_done.to_dict(), "key": arch_done.key(),
                       "status": "complete", "history": [{"epoch": 1, "val_accuracy": 0.5}], "params": 10,
                       "flops": 20, "fidelity": 1.0})
    t_empty = study.ask()                                   # killed before anything was sampled

    assert _recover_interrupted(study, run, space) == 3

    states = {t.number: t.state for t in study.get_trials()}
    assert states[t_done.number] == optuna.trial.TrialState.COMPLETE
    assert study.trials[t_done.number].values == [0.5, 20]
    for t in (t_sampled, t_running, t_empty):
        assert states[t.number] == optuna.trial.TrialState.FAIL and t.number in interrupted_trials(study)
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    assert space.params_for(arch_sampled) in queued and space.params_for(arch_running) in queued

    df = trials_table(run).set_index("trial_id")
    assert df.loc[t_sampled.number, "status"] == "interrupted"
    assert df.loc[t_sampled.number, "key"] == arch_sampled.key()  # named, so a reader can find its re-run
    assert df.loc[t_running.number, "key"] == arch_running.key()
    assert df.loc[t_done.number, "status"] == "complete"


def test_recovery_twice_changes_nothing(tmp_path):
    space, run, study = _run(tmp_path)
    _started(study, space)
    assert _recover_interrupted(study, run, space) == 1
    assert _recover_interrupted(study, run, space) == 0
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1


def test_a_worker_that_died_is_retried_on_resume_a_training_error_is_not(tmp_path):
    space, run, study = _run(tmp_path)
    died, raised = _started(study, space), _started(study, space)
    for (trial, arch), error in ((died, "worker died: the trial's worker process died"),
                                 (raised, "ConfigError: backbone.num_classes=5: the dataset has 10 classes")):
        trial.set_user_attr("arch", arch.to_dict())
        write_json_atomic(record_path(run, trial.number), {"trial_id": trial.number, "arch": arch.to_dict(),
                                                            "key": arch.key(), "status": "failed", "history": [],
                                                            "params": 1, "flops": 2, "error": error})
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    assert _recover_interrupted(study, run, space) == 1
    assert died[0].number in interrupted_trials(study) and raised[0].number not in interrupted_trials(study)
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    assert queued == [space.params_for(died[1])]
    df = trials_table(run).set_index("trial_id")
    assert df.loc[died[0].number, "status"] == "interrupted" and df.loc[raised[0].number, "status"] == "failed"
    assert _recover_interrupted(study, run, space) == 0  # once


def test_an_enqueued_network_killed_while_sampled_comes_back_whole(tmp_path):
    """A trial made from enqueue_trial (initial placements, validate's chosen networks) killed after
    its first parameter was suggested: queued again as the whole enqueued network, not as that first
    parameter with the rest left to the sampler (which brought validate back with another network)."""
    space, run, study = _run(tmp_path)
    base = space.reference_config("base", space.backbone_combos()[0])
    study.enqueue_trial(space.params_for(base))
    trial = study.ask()
    first = next(iter(space.params_for(base)))
    trial.suggest_categorical(first, ["none", "light", "base"])  # the kill falls here
    assert len(study.trials[trial.number].params) == 1

    assert _recover_interrupted(study, run, space) == 1

    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in queued] == [space.params_for(base)]
    assert arch_from_dict(interrupted_trials(study)[trial.number]).key() == base.key()  # named by the whole network
    rerun = study.ask()
    assert space.sample(rerun).key() == base.key()


def test_a_killed_sessions_journal_lock_does_not_delay_the_resume(tmp_path):
    """SIGKILL during a journal append leaves Optuna's lock file; the resuming session (which holds
    the run's own lock) takes it over at once instead of after Optuna's 30 s grace period."""
    import time

    from optuna.storages.journal import JournalFileSymlinkLock

    space, run, study = _run(tmp_path)
    study.ask()
    left = set(run.iterdir())
    assert JournalFileSymlinkLock(str(run / "study.journal")).acquire()  # taken, never released: a kill
    assert set(run.iterdir()) != left
    t0 = time.monotonic()
    study = open_study(run, make_sampler(space), space=space)
    assert _recover_interrupted(study, run, space) == 1
    assert time.monotonic() - t0 < 10 and set(run.iterdir()) - left == set()


class _Stop(Exception):
    pass


def test_resume_ends_the_killed_sessions_workers_before_it_reads_their_records(tmp_path, monkeypatch):
    """Ray workers outlive a SIGKILLed driver and go on training: one that finished after the
    recovery had queued its network again overwrote its record with "complete", and validate then
    held that network twice. The stale workers are ended (and waited for) before the recovery."""
    from mrla_nas.search import driver as search_module

    space, run, _study = _run(tmp_path)
    calls = []
    monkeypatch.setattr(search_module, "reap_stale_ray", lambda run_dir: calls.append("reap") or 0)

    def recover(*args):
        calls.append("recover")
        raise _Stop

    monkeypatch.setattr(search_module, "recover_interrupted", recover)
    try:
        search_module._run_session(space, run, 3, True, None, False)
    except _Stop:
        pass
    assert calls == ["reap", "recover"]


def test_stale_ray_processes_are_gone_when_the_reaping_returns(tmp_path):
    import json
    import subprocess
    import sys

    import psutil

    from mrla_nas.search.ray_cluster import reap_stale_ray

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        created = psutil.Process(proc.pid).create_time()
        (tmp_path / "ray-processes.json").write_text(json.dumps([{"pid": proc.pid, "created": created},
                                                                 {"pid": proc.pid, "created": created - 5}]))
        assert reap_stale_ray(tmp_path) == 1  # the second entry is another process that had that pid
        assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        assert not (tmp_path / "ray-processes.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_damaged_list_of_ray_processes_warns_and_ends_none(tmp_path, capsys):
    from mrla_nas.search.ray_cluster import reap_stale_ray, record_ray_processes

    for damaged in ('{"broken', '{"pid": 1}', '[1, {"pid": "x", "created": 0}, {"pid": true, "created": 0}]'):
        path = tmp_path / "ray-processes.json"
        path.write_text(damaged)
        assert reap_stale_ray(tmp_path) == 0
        path.write_text(damaged)
        record_ray_processes(tmp_path)  # rewrites a sound list (this process's children: none here)
        assert isinstance(__import__("json").loads(path.read_text()), list)
    assert "ray-processes.json is damaged" in capsys.readouterr().err


def test_a_resume_with_a_damaged_manifest_stops_before_changing_anything(tmp_path, capsys):
    from mrla_nas.cli import main

    space, run, study = _run(tmp_path)
    study.add_trial(optuna.trial.create_trial(values=[0.5, 100.0], params={}, distributions={}))
    (run / "manifest.json").write_text('{"sessions": "one"}')
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space.to_dict()))
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["search", str(space_file), "--runs-dir", str(tmp_path), "--name", "run", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json: {'sessions': 'one'}: expected the run's manifest" in err[0], err
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("change,expected", [
    (lambda d: d["proxy"].update(lr=0.5), "proxy.lr=0.5, but the run's frozen space ({run}/space.yaml) has 0.05;"),
    (lambda d: d["stages"][1].update(form=["none", "light"]), "stages[1].form=['none', 'light'], but the run's"),
])
def test_a_resume_with_another_space_names_what_changed(change, expected, tmp_path, capsys):
    from mrla_nas.cli import main

    space, run, study = _run(tmp_path)
    study.add_trial(optuna.trial.create_trial(values=[0.5, 100.0], params={}, distributions={}))
    doc = space.to_dict()
    change(doc)
    doc["search"]["trials"] = 99  # the search section may change
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(doc))
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["search", str(space_file), "--runs-dir", str(tmp_path), "--name", "run", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{space_file}: {expected.format(run=run)}" in err[0], err
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
