"""Latency as an objective: measured interleaved against the backbone without MRLA, the ratio the
front uses by default, the section's fields, one device per run."""
import json

import pytest

from mrla_nas.arch import ArchConfig, StageConfig
from mrla_nas.cost import latency as lat
from mrla_nas.errors import ConfigError
from mrla_nas.rundir.records import check_record
from mrla_nas.space import SearchSpace

PLAIN = ArchConfig(block="basic", layers=(1, 1), channels=(8, 16), stem="small", in_chans=1, num_classes=10,
                   stages=(StageConfig("none"), StageConfig("none")))
LIGHT = ArchConfig(block="basic", layers=(1, 1), channels=(8, 16), stem="small", in_chans=1, num_classes=10,
                   stages=(StageConfig("light"), StageConfig("light")))
SETTINGS = dict(mode="train_step", batch_size=8, resolution=14, threads=1, device="cpu", warmup=1, rounds=5,
                metric="ratio")


def _space(**top):
    data = {"name": "t", "backbone": {"layers": [1, 1], "channels": [8, 16], "in_chans": 1},
            "objectives": {"accuracy": "max", "latency": "min"}}
    data.update(top)
    return SearchSpace.from_dict(data, check_paths=False)


def test_the_reference_is_1_and_an_mrla_network_is_timed_against_it():
    ref = lat.measure_latency(PLAIN, PLAIN, SETTINGS)
    assert ref.ratio == 1.0 and ref.spread == 0.0 and ref.ms == ref.reference_ms > 0
    mine = lat.measure_latency(LIGHT, PLAIN, dict(SETTINGS, mode="inference"))
    assert mine.ms > 0 and mine.reference_ms > 0 and mine.ratio > 0 and mine.spread >= 0 and mine.rounds == 5
    assert lat.measure_latency(LIGHT, PLAIN, dict(SETTINGS, mode="inference")) is mine  # cached


def test_rounds_alternate_the_order_and_the_ratio_is_the_median_of_the_pairs(monkeypatch):
    order = []
    real_init = lat._Timed.__init__

    created = []

    def init(self, model, *args):  # the network is timed first, its reference second
        real_init(self, model, *args)
        self.is_ref = bool(created)
        created.append(self)

    def run(self, steps):  # the reference steps in 10 ms; the MRLA network 12, 30 (an outlier), 12, 13
        order.append("ref" if self.is_ref else "mine")
        mine = [0.012, 0.030, 0.012, 0.013]
        return 0.010 if self.is_ref else mine[(order.count("mine") - 1) % 4]

    monkeypatch.setattr(lat._Timed, "__init__", init)
    monkeypatch.setattr(lat._Timed, "run", run)
    lat._measure.cache_clear()
    try:
        got = lat.measure_latency(LIGHT, PLAIN, dict(SETTINGS, warmup=0, rounds=4))
    finally:
        lat._measure.cache_clear()
    assert order[1:] == ["ref", "mine", "mine", "ref", "ref", "mine", "mine", "ref"]  # after the probe: ABBA
    assert got.ratio == pytest.approx(1.25) and got.ms == pytest.approx(12.5) and got.reference_ms == pytest.approx(10)


@pytest.mark.parametrize("section, message", [
    ({"mode": "training"}, r"^latency\.mode='training': allowed: train_step, inference"),
    ({"device": "tpu"}, r"^latency\.device='tpu': allowed: cpu, cuda"),
    ({"metric": "seconds"}, r"^latency\.metric='seconds': allowed: ratio, ms"),
    ({"rounds": 0}, r"^latency\.rounds=0"),
    ({"warmup": -1}, r"^latency\.warmup=-1"),
    ({"batch": 8}, r"^latency\.batch: unknown key"),
])
def test_bad_latency_fields_are_one_line(section, message):
    with pytest.raises(ConfigError, match=message):
        _space(latency=section)


def test_objectives_need_accuracy_and_any_cost_and_the_sizes_default_to_the_proxys():
    space = _space()
    assert space.objective_names() == ["accuracy", "latency"]
    assert space.latency["batch_size"] == space.proxy["batch_size"] and space.latency["resolution"] == 28
    assert space.latency["metric"] == "ratio" and space.latency["mode"] == "train_step"
    assert SearchSpace.from_dict(space.to_dict(), check_paths=False) == space
    with pytest.raises(ConfigError, match=r"^objectives: accuracy \(max\) and at least one cost"):
        _space(objectives={"accuracy": "max"})
    plain = SearchSpace.from_dict({"name": "t"}, check_paths=False)
    assert plain.latency is None and "latency" not in plain.to_dict()  # old frozen spaces read the same
    assert space.latency_reference() == space.reference_config("none", space.backbone_combos()[0])


def test_latency_on_cuda_without_one_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import torch
    from mrla_nas.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbackbone: {layers: [1, 1], channels: [8, 16], in_chans: 1}\n"
                    "objectives: {accuracy: max, latency: min}\nlatency: {device: cuda}\n")
    assert main(["search", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latency.device='cuda': the search's driver" in err[0]
    assert not (tmp_path / "runs").exists()


def test_a_resume_on_another_kind_of_device_is_refused():
    from mrla_nas.search.driver import _check_same_latency_device

    space = _space()
    here = lat.device_label("cpu")
    _check_same_latency_device(space, {"sessions": [{"latency_device": here}]})
    _check_same_latency_device(space, {"sessions": [{}]})  # a run begun without latency
    with pytest.raises(ConfigError, match=r"^latency\.device='cpu': this run's latencies were measured on "
                                          r"cuda \(NVIDIA H200\), this machine is cpu"):
        _check_same_latency_device(space, {"sessions": [{"latency_device": "cuda (NVIDIA H200)"}]})


@pytest.mark.parametrize("latency, field", [("fast", "latency"), ({"ms": -1, "reference_ms": 1, "ratio": 1,
                                                                    "spread": 0}, "latency.ms")])
def test_a_damaged_latency_in_a_record_names_the_field(latency, field):
    rec = {"trial_id": 3, "status": "running", "latency": latency}
    with pytest.raises(ConfigError, match=rf"^trials/00003\.json: {field}="):
        check_record(rec, "trials/00003.json", 3)


@pytest.mark.slow
@pytest.mark.ray
def test_a_search_on_accuracy_and_latency_end_to_end(tmp_path, capsys):
    import shutil

    import pandas as pd
    import yaml

    from conftest import DATA
    from mrla_nas.cli import main

    data = yaml.safe_load((DATA.parent.parent / "search_spaces" / "tiny.yaml").read_text())
    data["proxy"]["path"] = str(DATA / "fmnist_slice")
    data["objectives"] = {"accuracy": "max", "latency": "min"}
    data["latency"] = {"rounds": 3, "warmup": 1, "batch_size": 8, "mode": "inference"}
    data["search"].update(trials=4, initial=["none", "light", ["light", "none"], ["none", "light"]])
    space = tmp_path / "lat.yaml"
    space.write_text(yaml.safe_dump(data))
    runs = tmp_path / "runs"
    assert main(["search", str(space), "--runs-dir", str(runs), "--quiet"]) == 0
    run = runs / "tiny"
    df = pd.read_csv(run / "trials.csv")
    assert {"latency", "latency_ms", "latency_reference_ms", "latency_spread"} <= set(df.columns)
    assert (df.loc[df["summary"].str.endswith("--"), "latency"] == 1.0).all()
    assert (df["latency"] > 0).all() and (df["latency"] == df["latency_ratio"]).all()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["sessions"][0]["latency_device"] == lat.device_label("cpu")
    capsys.readouterr()
    assert main(["pareto", str(run)]) == 0
    out = capsys.readouterr().out
    assert "latency" in out.splitlines()[0] and "1.000x" in out and "measured on cpu (" in out
    assert main(["table", str(run)]) == 0  # a table of a latency run carries it, for replays
    from mrla_nas.analysis.benchmark_table import load_table
    table = load_table(run / "table.csv")
    assert table.networks()["latency_ratio"].notna().all()
    assert table.provenance["latency"]["device"] == lat.device_label("cpu")
    capsys.readouterr()
    assert main(["explain", str(run), "--no-importance"]) == 0
    assert "% latency" in capsys.readouterr().out  # each stage x form's latency share beside its FLOPs share
    other = tmp_path / "other"
    shutil.copytree(run, other)
    m = json.loads((other / "manifest.json").read_text())
    m["sessions"][0]["latency_device"] = "cuda (NVIDIA H200)"
    (other / "manifest.json").write_text(json.dumps(m))
    assert main(["pareto", str(run), str(other)]) == 2
    assert "runs measured latency on different devices" in capsys.readouterr().err


def test_cost_times_registered_models_against_the_first(capsys):
    from mrla_nas.cli import main

    assert main(["cost", "mrla_light_resnet20", "mrla_base_resnet20", "--input-size", "16", "--num-classes", "10",
                 "--latency", "--rounds", "3", "--batch", "2", "--latency-mode", "inference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ms/step" in lines[1] and "x time" in lines[1]
    first, second = lines[2].split(), lines[3].split()
    assert first[-2:] == ["1.000", "0.000"] and float(second[-2]) > 0
    assert lines[-1].startswith("latency: one inference pass at batch 2, 1 thread(s), on cpu (")
