"""What mrla-nas uses of timm, Ray and Optuna beyond their documented APIs, pinned: each use carries a
comment naming it, and each test here fails when the library moves or changes it, before a user meets
it as a broken feature."""
import time

import optuna
import pytest


def test_timm_feature_take_indices_as_forward_intermediates_reads_indices():
    from mrla_nas.models.timm_internals import feature_take_indices

    assert feature_take_indices(4, None) == ([0, 1, 2, 3], 3)  # None: every stage
    assert feature_take_indices(4, 2) == ([2, 3], 3)  # an int: the last n
    assert feature_take_indices(4, [0, -1]) == ([0, 3], 3)  # a list: those, negatives from the end
    with pytest.raises(AssertionError):
        feature_take_indices(4, [4])


@pytest.mark.ray
@pytest.mark.own_ray  # not the suite's shared Ray: Ray finds a running one by its processes
def test_ray_resolves_auto_to_the_running_cluster_or_a_connection_error(tmp_path, monkeypatch):
    import psutil
    from ray._private.services import canonicalize_bootstrap_address_or_die

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no ray start's address file of another test
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # a Ray the user runs beside the suite is found by its GCS process; with none, a ConnectionError
    running = any(p.info["name"] == "gcs_server" for p in psutil.process_iter(["name"]))
    if running:
        host, _, port = canonicalize_bootstrap_address_or_die("auto", temp_dir=str(tmp_path)).rpartition(":")
        assert host and port.isdigit()
    else:
        with pytest.raises(ConnectionError):
            canonicalize_bootstrap_address_or_die("auto", temp_dir=str(tmp_path))
    assert canonicalize_bootstrap_address_or_die("10.1.2.3:6379") == "10.1.2.3:6379"  # HOST:PORT as given


def test_optuna_keeps_an_enqueued_trials_params_in_fixed_params():
    study = optuna.create_study()
    study.enqueue_trial({"x": 1.5, "form": "light"})
    trial = study.ask()  # asked but no parameter suggested yet: what a kill mid-sampling leaves
    frozen = study.trials[trial.number]
    assert frozen.params == {} and frozen.system_attrs["fixed_params"] == {"x": 1.5, "form": "light"}


def test_optuna_journal_lock_is_released_by_another_lock_object(tmp_path):
    # rundir.study releases a killed session's lock through a lock object of its own, as Optuna's
    # takeover after its grace period does; a live session's lock is never released (the run lock).
    from optuna.storages.journal import JournalFileSymlinkLock

    path = str(tmp_path / "study.journal")
    held = JournalFileSymlinkLock(path)
    assert held.acquire()
    JournalFileSymlinkLock(path).release()
    start = time.monotonic()
    assert JournalFileSymlinkLock(path).acquire() and time.monotonic() - start < 5
    with pytest.raises(RuntimeError):  # what rundir.study reads as "no lock was left behind"
        JournalFileSymlinkLock(str(tmp_path / "other.journal")).release()
