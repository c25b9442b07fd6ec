"""Faults, with nothing lost: each injected fault leaves every finished trial in place, runs none twice,
and the user reads one clear line (slow: each test runs real searches on the committed slice).

The SIGKILL in each phase of a trial is pinned in tests/test_resume.py (fast) and
tests/test_search.py::test_resume_after_sigkill_loses_and_repeats_nothing (end to end).
"""
import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import DATA, fake_run
from mrla_nas.cli import main
from mrla_nas.analysis.run import load_run
from mrla_nas.rundir.files import read_records

pytestmark = [pytest.mark.slow, pytest.mark.ray]
SPACES = Path(__file__).parent.parent / "search_spaces"


def _space(tmp_path, data_path=None, **proxy) -> Path:
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["proxy"].update(path=str(data_path or DATA / "fmnist_slice"), **proxy)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _search(space, runs, trials, *extra):
    return main(["search", str(space), "--runs-dir", str(runs), "--trials", str(trials), "--quiet", *extra])


def _finished(run):
    return {i: r for i, r in read_records(run).items() if r["status"] in ("complete", "infeasible")}


def _one_line(capsys, expected):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    return err[0]


def test_a_journal_cut_by_a_kill_then_resume(tmp_path, capsys):
    space, runs = _space(tmp_path), tmp_path / "runs"
    assert _search(space, runs, 3) == 0
    run = runs / "tiny"
    before = _finished(run)
    journal = run / "study.journal"
    journal.write_bytes(journal.read_bytes()[:-37])  # the last append, cut in the middle
    capsys.readouterr()
    assert _search(space, runs, 5, "--resume") == 0
    assert "set aside in study.journal.cut-" in capsys.readouterr().err
    after = _finished(run)
    for i, rec in before.items():  # nothing finished is lost or trained again
        assert after[i]["history"] == rec["history"] and after[i]["wall_s"] == rec["wall_s"]
    assert len(after) == 5
    assert main(["pareto", str(run)]) == 0 and main(["export", str(run)]) == 0


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` read-only for this process, also as root (a read-only bind mount of itself)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, m in modes.items():
                p.chmod(m)
        return
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    # root ignores permission bits: a read-only bind mount is the only way; the test machines allow it
    assert done.returncode == 0, f"cannot make a read-only folder here: {done.stderr.decode().strip()}"
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_run_directory(tmp_path, capsys):
    space, runs = _space(tmp_path), tmp_path / "runs"
    assert _search(space, runs, 2) == 0
    run = runs / "tiny"
    journal_before = (run / "study.journal").read_bytes()
    capsys.readouterr()
    with _read_only(run):
        assert _search(space, runs, 4, "--resume") == 2
        _one_line(capsys, "cannot be written (Read-only file system); nothing was changed")
        assert main(["pareto", str(run)]) == 0  # the front is still shown
        out, err = capsys.readouterr()
        assert "* = knee" in out and "not written" in err
        other = fake_run(tmp_path / "other", [(["none", "none"], "complete", 0.8, 100, 1.0)])
        assert main(["pareto", str(run), str(other)]) == 0  # the overlay's default place is read-only too
        out, err = capsys.readouterr()
        assert out.count("* = knee") == 2 and "give --plot FILE for the overlay" in err
        assert str(other / "pareto.png") in out
        assert main(["export", str(run)]) == 2
        _one_line(capsys, "give -o FILE somewhere writable")
        assert main(["export", str(run), "-o", str(tmp_path / "best.yaml")]) == 0
    assert (run / "study.journal").read_bytes() == journal_before
    assert _search(space, runs, 4, "--resume") == 0  # and once writable again, it goes on
    assert len(_finished(run)) == 4


def test_the_dataset_folder_gone_between_sessions(tmp_path, capsys):
    data = tmp_path / "fmnist"
    shutil.copytree(DATA / "fmnist_slice", data)
    space, runs = _space(tmp_path, data), tmp_path / "runs"
    assert _search(space, runs, 2) == 0
    run = runs / "tiny"
    journal_before = (run / "study.journal").read_bytes()
    shutil.rmtree(data)
    capsys.readouterr()
    assert _search(space, runs, 4, "--resume") == 2
    _one_line(capsys, f"proxy.path='{data}': folder does not exist")
    assert (run / "study.journal").read_bytes() == journal_before
    assert len(load_run(run).trials) == 2


def test_resumed_with_a_different_trial_count(tmp_path, capsys):
    space, runs = _space(tmp_path), tmp_path / "runs"
    assert _search(space, runs, 3) == 0
    run = runs / "tiny"
    before = _finished(run)
    assert main(["search", str(space), "--runs-dir", str(runs), "--trials", "2", "--resume"]) == 0
    assert "3 trials finished already (2 asked for); nothing to run" in capsys.readouterr().out
    assert _finished(run) == before
    assert _search(space, runs, 5, "--resume") == 0
    after = _finished(run)
    assert len(after) == 5 and all(after[i] == rec for i, rec in before.items())


HOOK = textwrap.dedent("""
    # Loaded by every Python process started with this PYTHONPATH: the test's Ray workers (the test's
    # own process has already started). Trials whose first stage carries MRLA die hard.
    import os, signal
    import mrla_nas.training.proxy as proxy

    _train = proxy.train_proxy

    def train_proxy(arch, *args, **kwargs):
        form = arch.stages[0].form
        if form == "light":
            os._exit(7)                              # no exception, no finally: the process is gone
        if form == "base":
            os.kill(os.getpid(), signal.SIGSEGV)     # a segfault
        return _train(arch, *args, **kwargs)

    proxy.train_proxy = train_proxy
""")


@pytest.mark.own_ray  # its workers must see the PYTHONPATH it sets
def test_a_worker_that_dies_hard_is_recorded_failed_and_the_search_goes_on(tmp_path, monkeypatch, capsys):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["proxy"]["path"] = str(DATA / "fmnist_slice")
    data["search"].update(initial=[["light", "none"], ["base", "none"], "none"], sampler="random")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(data))
    assert _search(space, tmp_path / "runs", 6) == 0
    df = load_run(tmp_path / "runs" / "tiny").trials
    assert len(df) == 6
    dead = df[df["stage1_form"] != "none"]
    assert len(dead) >= 2 and set(dead["status"]) == {"failed"}
    assert dead["error"].str.startswith("worker died").all()
    assert set(df[df["stage1_form"] == "none"]["status"]) == {"complete"}
    err = capsys.readouterr().err
    assert "mrla-nas: trial 0 failed: worker died" in err


def test_trials_csv_is_current_while_the_search_runs(tmp_path):
    space, runs = _space(tmp_path, epochs=3, train_size=900), tmp_path / "runs"
    cmd = [sys.executable, "-m", "mrla_nas.cli", "search", str(space), "--runs-dir", str(runs), "--trials", "6",
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    csv, seen_running, seen_partial = runs / "tiny" / "trials.csv", False, None
    try:
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            if (runs / "tiny" / "study.journal").exists():
                live = load_run(runs / "tiny").trials
                seen_running |= bool(len(live)) and (live["status"] == "running").any()
            if csv.exists():
                df = pd.read_csv(csv)  # never half a file: it is replaced atomically
                if 0 < (df["status"] == "complete").sum() < 6:
                    seen_partial = len(df)
            time.sleep(0.3)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.wait() == 0
    assert seen_partial, "trials.csv was not written while the search ran"
    assert seen_running, "load_run on a running search showed no running trial"
    assert len(pd.read_csv(csv)) == 6


@pytest.mark.parametrize("address,expected", [("{closed}", "no Ray cluster answers there (Connection refused)"),
                                              ("ray://{closed}", "no Ray cluster answers there"),
                                              ("nonsense", "expected HOST:PORT of a Ray cluster's head"),
                                              ("host:99999", "expected HOST:PORT")])
def test_a_cluster_address_nothing_answers_is_one_line_before_anything_is_written(address, expected, tmp_path,
                                                                                  capsys, monkeypatch):
    # ray.init waits for minutes on an address nothing answers, after the run directory was made
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"  # free once the socket closes: nothing listens there
    address = address.format(closed=closed)
    space, runs = _space(tmp_path), tmp_path / "runs"
    assert _search(space, runs, 2, "--address", address) == 2
    _one_line(capsys, f"--address={address!r}: {expected}")
    monkeypatch.setenv("RAY_ADDRESS", address)
    assert _search(space, runs, 2) == 2
    _one_line(capsys, f"RAY_ADDRESS={address!r}: {expected}")
    assert not runs.exists()


@pytest.mark.parametrize("found", [None, "{closed}"])
def test_auto_with_no_cluster_running_is_one_line_before_anything_is_written(found, tmp_path, capsys, monkeypatch):
    # `auto` is resolved by Ray's own resolver (the last `ray start` here); stubbed so that no cluster
    # another test left running can answer
    import socket

    import ray._private.services as services
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"

    def resolve(address):
        if found is None:
            raise ConnectionError("Could not find any running Ray instance.\nmore")
        return found.format(closed=closed)

    monkeypatch.setattr(services, "canonicalize_bootstrap_address_or_die", resolve)
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    space, runs = _space(tmp_path), tmp_path / "runs"
    assert _search(space, runs, 2) == 2
    expected = ("Could not find any running Ray instance." if found is None else
                f"(the last `ray start` here: {closed}): no Ray cluster answers there")
    _one_line(capsys, f"RAY_ADDRESS='auto'{':' if found is None else ''} {expected}")
    assert not runs.exists()
