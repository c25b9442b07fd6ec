"""End-to-end searches on the committed Fashion-MNIST slice (slow: each starts a local Ray)."""
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest
import timm
import torch
import yaml

from conftest import DATA, stop_ray_cluster
from mrla_nas import build_model, load_arch
from mrla_nas.cli import main
from mrla_nas.cost.flops import count_params, measure
from mrla_nas.rundir.files import read_records
from mrla_nas.search import search
from mrla_nas.search.ray_cluster import TUNE_ENVIRONMENT

pytestmark = [pytest.mark.slow, pytest.mark.ray]
SPACES = Path(__file__).parent.parent / "search_spaces"


def _space(tmp_path, name="space.yaml", **changes) -> Path:
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["proxy"]["path"] = str(DATA / "fmnist_slice")
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for k in parents:
            node = node[k]
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _process_settings():
    """What a search may change for its own duration only (tests/test_layout.py pins the import side)."""
    watched = ("PATH", *TUNE_ENVIRONMENT)
    return ({k: os.environ.get(k) for k in watched}, optuna.logging.get_verbosity(), torch.get_num_threads(),
            logging.getLogger("fvcore").level)


def test_tiny_search_end_to_end_then_pareto_export_and_rebuild(tmp_path, capsys):
    before = _process_settings()
    result = search(_space(tmp_path), runs_dir=tmp_path / "runs", trials=5, progress=False)
    assert _process_settings() == before
    run = result.run_dir
    df = result.trials
    assert len(df) == 5 and set(df["status"]) == {"complete"}
    assert (df["fidelity"] == 1.0).all() and df["accuracy"].between(0, 1).all()
    for name in ("space.yaml", "study.journal", "trials.csv", "manifest.json"):
        assert (run / name).exists(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["flops_convention"] == "fvcore" and "torch" in manifest["versions"]
    assert list(df["trial_id"][:2]) == [0, 1] and df["summary"][0].endswith("--")  # initial: none, light
    assert df["summary"][1].endswith("LL")

    assert main(["pareto", str(run)]) == 0
    assert (run / "pareto.png").stat().st_size > 10_000 and (run / "pareto.csv").exists()
    out_file = tmp_path / "chosen.yaml"
    assert main(["export", str(run), "--knee", "-o", str(out_file)]) == 0
    doc = yaml.safe_load(out_file.read_text())
    assert doc["provenance"]["trial"] in set(df["trial_id"]) and doc["provenance"]["seed"] == 0
    arch = load_arch(out_file)
    for model in (build_model(arch), timm.create_model("mrla_resnet", arch=str(out_file))):
        assert count_params(model) == doc["metrics"]["params"]
        assert measure(model, doc["metrics"]["input_shape"]).flops == doc["metrics"]["flops"]
    assert main(["build", str(out_file), "--input-size", "14"]) == 0
    assert "params" in capsys.readouterr().out


def test_infeasible_configs_are_recorded_never_trained(tmp_path):
    result = search(_space(tmp_path, constraints={"max_flops": 600_000}), runs_dir=tmp_path / "runs",
                    trials=6, progress=False)
    df = result.trials
    over = df[df["flops"] > 600_000]
    assert len(over) >= 1  # "light everywhere" is an initial config and costs 617k
    assert set(over["status"]) == {"infeasible"} and over["accuracy"].isna().all()
    records = read_records(result.run_dir)
    assert all(records[i]["history"] == [] for i in over["trial_id"])
    assert set(df[df["flops"] <= 600_000]["status"]) == {"complete"}


def _data_gone_for_base_first(config, ctx):
    """The real proxy training, whose data folder is gone for networks with MRLA-base in stage 1: a
    failure inside the training, which no check before the search can see."""
    from mrla_nas.search.tune_trainable import proxy_trial

    if config["arch"]["stages"][0]["form"] == "base":
        ctx = dict(ctx, proxy=dict(ctx["proxy"], path="/nonexistent/fashion-mnist"))
    return proxy_trial(config, ctx)


def test_a_failing_trial_does_not_stop_the_search(tmp_path):
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this module
    space = _space(tmp_path, search__initial=[["base", "none"], ["none", "none"]])
    result = search(space, runs_dir=tmp_path / "runs", trials=6, progress=False, trainable=_data_gone_for_base_first)
    df = result.trials
    assert len(df) == 6
    failed = df[df["status"] == "failed"]
    assert len(failed) >= 1 and set(failed["stage1_form"]) == {"base"}
    assert failed["error"].str.contains("proxy.path='/nonexistent/fashion-mnist'").all()
    assert (df["status"] == "complete").sum() >= 1


def test_same_seed_same_trials(tmp_path):
    space = _space(tmp_path, search__concurrency=1)
    a = search(space, name="a", runs_dir=tmp_path / "runs", trials=5, progress=False).trials
    b = search(space, name="b", runs_dir=tmp_path / "runs", trials=5, progress=False).trials
    assert a["key"].tolist() == b["key"].tolist()
    assert a["accuracy"].tolist() == b["accuracy"].tolist()


def test_existing_run_needs_resume(tmp_path, capsys):
    space = _space(tmp_path)
    search(space, runs_dir=tmp_path / "runs", trials=2, progress=False)
    assert main(["search", str(space), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--resume" in capsys.readouterr().err


def _alive(pids):
    out = []
    for item in pids:
        try:
            if abs(psutil.Process(item["pid"]).create_time() - item["created"]) < 1e-3:
                out.append(item)
        except psutil.Error:
            pass
    return out


def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path):
    space = _space(tmp_path, proxy__epochs=3, proxy__train_size=900)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mrla_nas.cli", "search", str(space), "--runs-dir", str(runs), "--trials", "10",
           "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = runs / "tiny"
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [r for r in read_records(run).values() if r["status"] == "complete"] if (run / "trials").exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {i: r for i, r in read_records(run).items() if r["status"] == "complete"}
    assert 2 <= len(before) < 10, "the search finished before it could be killed"
    orphans = json.loads((run / "ray-processes.json").read_text())

    assert main(["search", str(space), "--runs-dir", str(runs), "--trials", "10", "--resume", "--quiet"]) == 0
    after = read_records(run)
    for i, rec in before.items():  # nothing completed is lost or trained again
        assert after[i]["status"] == "complete" and after[i]["history"] == rec["history"]
        assert after[i]["wall_s"] == rec["wall_s"]
    df = pd.read_csv(run / "trials.csv")
    finished = df[df["status"].isin(["complete", "infeasible", "failed"])]
    assert len(finished) == 10
    # queued again and finished (a trial killed mid-sampling has no key; tests/test_resume.py pins that case)
    for _, row in df[(df["status"] == "interrupted") & df["key"].notna()].iterrows():
        rerun = (df["key"] == row["key"]) & df["status"].isin(["complete", "infeasible"])
        assert (rerun & (df["trial_id"] > row["trial_id"])).any()
    assert _alive(orphans) == []  # Ray processes orphaned by the kill were ended
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2 and manifest["sessions"][1]["resumed"]


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_cluster_env() -> dict:
    # a local test cluster: no token; its workers at the driver's priority, not `ray start`'s nice 15
    # (on 2 busy cores they would starve: the test is about where trials run, not at what priority)
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_worker_niceness="0")


def test_search_on_an_existing_two_node_cluster(tmp_path):
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = _test_cluster_env()
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                       env=env, check=True, capture_output=True)
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True)
        # as a user would: a separate driver process (this one already ran local Ray sessions)
        cli = [sys.executable, "-m", "mrla_nas.cli", "search", str(_space(tmp_path)), "--runs-dir",
               str(tmp_path / "runs"), "--trials", "6", "--address", f"127.0.0.1:{port}", "--quiet"]
        done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        probe = ("import json, ray; ray.init(address='127.0.0.1:%d', log_to_driver=False); "
                 "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))" % port)
        listed = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        cluster_nodes = set(json.loads(listed.stdout.strip().splitlines()[-1]))
    finally:
        stop_ray_cluster(port)
    run = tmp_path / "runs" / "tiny"
    df = pd.read_csv(run / "trials.csv")
    assert len(df) == 6 and set(df["status"]) == {"complete"}
    assert len(cluster_nodes) == 2
    nodes = {r["node"] for r in read_records(run).values()}
    assert nodes and nodes <= cluster_nodes  # trained on the cluster's nodes
    assert not (run / "ray-processes.json").exists()  # and no local Ray was started
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["sessions"][0]["address"] == f"127.0.0.1:{port}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback to the CPU is that of a machine without CUDA")
def test_gpu_trials_on_a_cluster_land_on_its_gpu_node_and_auto_falls_back_to_the_cpu(tmp_path):
    """Ray's GPUs are logical here (`ray start --num-gpus`): a CPU-only head refuses GPU trials before
    anything is written; a node that declares a GPU gets every trial (a 0.5 share each), and each
    trains on the CPU since its process sees no CUDA device, which the search says once."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = _test_cluster_env()
    env.pop("CUDA_VISIBLE_DEVICES", None)  # Ray refuses logical GPUs where it names no device
    common = ["--disable-usage-stats"]
    space = _space(tmp_path, search__gpus_per_trial=0.5, search__trials=4)
    cli = [sys.executable, "-m", "mrla_nas.cli", "search", str(space), "--runs-dir", str(tmp_path / "runs"),
           "--address", f"127.0.0.1:{port}", "--quiet"]
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", "--num-cpus=2",
                        "--num-gpus=0", *common], env=env, check=True, capture_output=True)
        refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and not (tmp_path / "runs").exists()
        assert refused.stderr.strip().splitlines()[-1].startswith(
            f"mrla-nas: error: search.gpus_per_trial=0.5: the cluster at 127.0.0.1:{port} declares 0 GPUs")
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", "--num-cpus=2", "--num-gpus=1", *common],
                       env=env, check=True, capture_output=True)
        done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        probe = ("import json, ray; ray.init(address='127.0.0.1:%d', log_to_driver=False); "
                 "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive'] and n['Resources'].get('GPU')]))"
                 % port)
        listed = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        gpu_nodes = set(json.loads(listed.stdout.strip().splitlines()[-1]))
    finally:
        stop_ray_cluster(port)
    records = read_records(tmp_path / "runs" / "tiny").values()
    assert len(records) == 4 and {r["status"] for r in records} == {"complete"}
    assert len(gpu_nodes) == 1 and {r["node"] for r in records} == gpu_nodes
    assert {r["device"] for r in records} == {"cpu"} and all("sees no CUDA device" in r["device_note"] for r in records)
    notes = [ln for ln in done.stderr.splitlines() if "sees no CUDA device" in ln]
    assert notes == ["mrla-nas: proxy.device=auto: this trial holds a GPU share but its process sees no CUDA device; "
                     "it trains on the CPU"]


@pytest.mark.parametrize("scheduler", ["asha", "moasha"])
def test_early_stopping_prunes_trials_and_keeps_them_off_the_front(tmp_path, scheduler):
    from mrla_nas.analysis.run import load_run
    from mrla_nas.rundir.study import open_study

    space = _space(tmp_path, search__scheduler=scheduler, proxy__epochs=4, proxy__train_size=600,
                   search__initial=[])
    result = search(space, runs_dir=tmp_path / "runs", trials=10, progress=False)
    df = result.trials
    stopped = df[df["status"] == "stopped"]
    assert len(stopped) >= 1 and (stopped["fidelity"] < 1).all()
    study = open_study(result.run_dir)
    for tid in stopped["trial_id"]:  # told PRUNED, with its partial accuracy apart from any value
        t = study.trials[int(tid)]
        assert t.state.name == "PRUNED" and t.values is None
        assert t.user_attrs["stopped_epoch"] in (1, 2) and 0 <= t.user_attrs["partial_accuracy"] <= 1
    run = load_run(result.run_dir)
    assert len(run.front) >= 1 and (run.front["fidelity"] == 1.0).all()
    assert not set(run.front["trial_id"]) & set(stopped["trial_id"])


def test_three_objectives_end_to_end(tmp_path, capsys):
    from mrla_nas.analysis.run import load_run
    from mrla_nas.rundir.study import open_study

    space = _space(tmp_path, objectives={"accuracy": "max", "flops": "min", "params": "min"})
    result = search(space, runs_dir=tmp_path / "runs", trials=4, progress=False)
    study = open_study(result.run_dir)
    assert study.metric_names == ["accuracy", "flops", "params"]
    for t in study.get_trials():
        assert t.state.name == "COMPLETE" and len(t.values) == 3
        if "duplicate_of" in t.user_attrs:  # a re-proposal, told the original's values: no record of its own
            continue
        rec = read_records(result.run_dir)[t.number]
        assert t.values == [rec["history"][-1]["val_accuracy"], rec["flops"], rec["params"]]
        assert rec["niceness"] == os.nice(0)  # trials run at the driver's own priority, not Ray's nice 15
    run = load_run(result.run_dir)
    assert len(run.reference) == 3 and 0 < run.hypervolume <= 1
    assert main(["pareto", str(result.run_dir)]) == 0
    assert "3 objectives: accuracy, flops, params" in capsys.readouterr().out


def test_a_budget_buys_distinct_networks_and_an_exhausted_space_stops(tmp_path, capsys):
    space = _space(tmp_path, search__initial=[])  # tiny: 25 distinct networks, all within budget
    result = search(space, runs_dir=tmp_path / "runs", trials=15, progress=False)
    trained = [r["key"] for r in read_records(result.run_dir).values() if r["history"]]
    assert len(trained) == len(set(trained)) == 15  # 15 trials, 15 networks, none trained twice
    df = result.trials
    assert len(df) == 15 and df["key"].is_unique and (df["proposed"] >= 1).all()
    result = search(space, runs_dir=tmp_path / "runs", trials=40, resume=True, progress=False)
    assert len(result.trials) == 25 and result.trials["key"].is_unique
    assert "the space holds 25 distinct networks and all 25 are evaluated" in capsys.readouterr().out
    trained = [r["key"] for r in read_records(result.run_dir).values() if r["history"]]
    assert len(trained) == len(set(trained)) == 25


def test_vit_space_search_pareto_export_and_rebuild(tmp_path, capsys):
    data = yaml.safe_load((SPACES / "fmnist_vit.yaml").read_text())
    data["proxy"].update(path=str(DATA / "fmnist_slice"), train_size=300, val_size=200, epochs=1)
    space = tmp_path / "vit.yaml"
    space.write_text(yaml.safe_dump(data))
    assert main(["space", str(space)]) == 0
    result = search(space, runs_dir=tmp_path / "runs", trials=4, progress=False)
    df = result.trials
    assert len(df) == 4 and set(df["status"]) == {"complete"} and df["summary"].str.startswith("vit[64x6,p4]").all()
    run = result.run_dir
    assert main(["pareto", str(run)]) == 0 and "group" not in capsys.readouterr().err
    out_file = tmp_path / "best.yaml"
    assert main(["export", str(run), "-o", str(out_file)]) == 0
    doc = yaml.safe_load(out_file.read_text())
    assert doc["arch"]["backbone"] == "vit" and doc["metrics"]["input_shape"] == [1, 1, 28, 28]
    arch = load_arch(out_file)
    for model in (build_model(arch), timm.create_model("mrla_vit", arch=str(out_file))):
        assert count_params(model) == doc["metrics"]["params"]
        assert measure(model, doc["metrics"]["input_shape"]).flops == doc["metrics"]["flops"]
    capsys.readouterr()
    assert main(["build", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "group 1: blocks 0-1" in out and f"FLOPs {doc['metrics']['flops']:,}" in out
