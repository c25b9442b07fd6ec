"""Seeds, validation at higher fidelity and per-stage effects: the statistics on hand cases, the seeds
against single-seed runs, and `validate` end to end with a SIGKILL in the middle (slow)."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import DATA, fake_run
from mrla_nas import ArchConfig
from mrla_nas.cli import main
from mrla_nas.training.data import stratified_split
from mrla_nas.analysis.explain import additive_effects
from mrla_nas.training.proxy import train_proxy
from mrla_nas.rundir.files import read_records
from mrla_nas.analysis.validation import (_compare, chosen_networks, noise_dominated, rank_correlations,
                                         t_interval)
from mrla_nas.analysis.run import load_run
from mrla_nas.rundir.files import write_json_atomic

SPACES = Path(__file__).parent.parent / "search_spaces"
PROXY = dict(dataset="fashion-mnist", path=str(DATA / "fmnist_slice"), train_size=300, val_size=200, epochs=2,
             resolution=14, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
             augmentation="flip", threads=1, val_split="train")
ARCH = ArchConfig.from_dict({"block": "basic", "layers": [1, 1], "channels": [8, 16], "stem": "small",
                             "in_chans": 1, "num_classes": 10, "stages": ["light", "base"],
                             "drop_path_rate": 0.2})  # drop-path: global RNG in use, as the seeds take turns


def test_seeds_give_exactly_the_results_of_single_seed_runs():
    together = train_proxy(ARCH, PROXY, seed=0, seeds=[0, 1, 2], val_seed=0)
    alone = [train_proxy(ARCH, PROXY, seed=s, val_seed=0) for s in (0, 1, 2)]
    for epoch, rep in enumerate(together.history):
        assert rep.val_accuracies == [a.history[epoch].val_accuracy for a in alone]
        assert rep.val_accuracy == pytest.approx(np.mean(rep.val_accuracies))
        assert rep.val_accuracy_sd == pytest.approx(np.std(rep.val_accuracies, ddof=1))
    assert len(set(together.history[-1].val_accuracies)) > 1  # the seeds really differ


def test_validation_images_do_not_depend_on_the_training_size_or_seed():
    y = np.repeat(np.arange(10), 120)
    small_tr, small_va = stratified_split(y, 200, 300, seed=0)
    large_tr, large_va = stratified_split(y, 800, 300, seed=0)
    other_tr, other_va = stratified_split(y, 200, 300, seed=5, val_seed=0)
    assert (small_va == large_va).all() and (other_va == small_va).all()
    assert set(small_tr) <= set(large_tr)  # a smaller training subset is part of a larger one
    assert not set(other_tr) & set(small_va) and set(other_tr) != set(small_tr)


def test_rank_correlations_equal_scipy_on_hand_cases():
    x, y = [1, 2, 3, 4, 5], [1, 3, 2, 4, 5]
    tau, rho = rank_correlations(x, y)
    assert tau.value == pytest.approx(0.8) == pytest.approx(stats.kendalltau(x, y)[0])  # 9 of 10 pairs agree
    assert rho.value == pytest.approx(0.9) == pytest.approx(stats.spearmanr(x, y)[0])
    assert tau.low <= tau.value <= tau.high
    reversed_tau, _ = rank_correlations(x, x[::-1])
    assert reversed_tau.value == pytest.approx(-1.0)
    assert math.isnan(rank_correlations([1, 2], [2, 1])[0].value)  # too few pairs to say anything


def test_t_interval_hand_case():
    mean, sd, low, high = t_interval([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92) and sd == pytest.approx(0.02)
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)  # 4.303 * 0.01155
    assert (low, high) == pytest.approx((0.92 - half, 0.92 + half))


def test_dominance_beyond_noise():
    t = pd.DataFrame({"val_mean": [0.90, 0.95, 0.905, 0.99], "val_sd": [0.001, 0.001, 0.02, 0.001],
                      "val_n": [3, 3, 3, 3], "flops": [100, 100, 90, 200]})
    out = noise_dominated(t, ["flops"])
    assert out == {0: 1}  # 1 is as cheap and clearly better; 2 is cheaper; 3 is dearer
    assert 2 not in out  # nothing cheaper-or-equal than row 2 beats it


def test_a_latency_objective_is_one_of_the_costs_the_validated_front_is_judged_on(tmp_path):
    # a validation of a run searched on latency stopped at its comparison (KeyError 'latency')
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["objectives"] = {"accuracy": "max", "flops": "min", "latency": "min"}
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(data))
    run = fake_run(tmp_path, [(["none", "none"], "complete", 0.80, 100, 1.0),
                              (["light", "light"], "complete", 0.85, 120, 1.0),
                              (["base", "base"], "complete", 0.83, 110, 1.0)], space_file, latencies=[1.0, 1.3, 1.2])
    out = run / "validate"
    out.mkdir()
    # validated: base beats light at lower FLOPs, but light is not dominated: its latency is not dearer
    validated = [[.80, .81, .80], [.84, .85, .84], [.90, .91, .90]]
    for i, (rec, accs, latency) in enumerate(zip(read_records(run).values(), validated, [1.0, 1.1, 1.2])):
        rec.update(history=[dict(rec["history"][-1], val_accuracies=accs, seeds=[0, 1, 2])], latency_value=latency)
        write_json_atomic(out / "trials" / f"{i:05d}.json", rec)
    loaded = load_run(run)
    report = _compare(loaded, chosen_networks(loaded), out, loaded.space)
    assert sorted(report.table["latency"]) == [1.0, 1.1, 1.2]
    assert report.dominated == {}  # on FLOPs alone, base would dominate light beyond noise


def test_additive_effects_against_a_hand_computed_table():
    rows = []
    for f1 in ("none", "light", "base"):
        for f2 in ("none", "light", "base"):
            effect = {"none": 0.0, "light": 0.10, "base": 0.04}[f1] + {"none": 0.0, "light": -0.02, "base": 0.03}[f2]
            for noise in (-0.005, 0.005):
                rows.append({"stage1_form": f1, "stage2_form": f2, "accuracy": 0.5 + effect + noise})
    t = additive_effects(pd.DataFrame(rows), 2, "accuracy", resamples=300)
    got = {(r.stage, r.form): r for r in t.itertuples()}
    for key, value in {(1, "light"): 0.10, (1, "base"): 0.04, (2, "light"): -0.02, (2, "base"): 0.03}.items():
        assert got[key].effect == pytest.approx(value, abs=1e-9)
        assert got[key].low < value < got[key].high
        assert got[key].n_with == 6 and got[key].n_none == 6
    assert t.attrs["intercept"] == pytest.approx(0.5)


def test_additive_effects_compare_mrla_within_a_backbone():
    # a space with two widths: the wide backbone is +0.2 accurate and 4x the FLOPs; light is tried more
    # often on the narrow one. Without a backbone term the width's effect leaks into MRLA's.
    rows = []
    for width, (acc, flops) in {"narrow": (0.5, 100.0), "wide": (0.7, 400.0)}.items():
        for f1 in ("none", "light"):
            for f2 in ("none", "light") if width == "narrow" or f1 == "none" else ("none",):
                light = (f1 == "light") + (f2 == "light")
                rows.append({"stage1_form": f1, "stage2_form": f2, "backbone": width,
                             "accuracy": acc + 0.01 * light, "flops": flops + (1.0 if width == "narrow" else 4.0) * light})
    t = additive_effects(pd.DataFrame(rows), 2, "accuracy", resamples=0)
    assert t.set_index(["stage", "form"])["effect"].to_dict() == pytest.approx({(1, "light"): 0.01, (2, "light"): 0.01})
    assert t.attrs["backbones"] == 2
    without = additive_effects(pd.DataFrame(rows).drop(columns="backbone"), 2, "accuracy", resamples=0)
    assert abs(without["effect"].iloc[1] - 0.01) > 0.02  # what the backbone term corrects


def test_an_effect_the_networks_cannot_tell_apart_is_not_a_number():
    # light in stage 1 was only ever tried with light in stage 2: their effects are not separable
    t = pd.DataFrame({"stage1_form": ["none", "light", "none"], "stage2_form": ["none", "light", "none"],
                      "accuracy": [0.5, 0.6, 0.52]})
    out = additive_effects(t, 2, "accuracy", resamples=0)
    assert out["effect"].isna().all()


@pytest.mark.slow
@pytest.mark.ray
def test_search_with_seeds_validate_resumes_after_sigkill_and_explain(tmp_path, capsys):
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["proxy"].update(path=str(DATA / "fmnist_slice"), seeds=2, train_size=400)
    data["search"]["initial"] = ["none", "light", "base"]
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(data))
    runs = tmp_path / "runs"
    assert main(["search", str(space), "--runs-dir", str(runs), "--trials", "6", "--quiet"]) == 0
    run = runs / "tiny"
    df = pd.read_csv(run / "trials.csv")
    assert (df["seeds"] == 2).all() and (df["accuracy_sd"] >= 0).all()
    out = capsys.readouterr().out
    assert "proxy's validation accuracy after 1 epoch on 400 fashion-mnist images at 14 px, 2 seeds (mean ± sd" in out
    assert "validated" not in out

    cmd = [sys.executable, "-m", "mrla_nas.cli", "validate", str(run), "--epochs", "3", "--seeds", "2",
           "--train-size", "600", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = run / "validate"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "trials").exists() and any(r["status"] == "complete" for r in read_records(out).values()):
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {i: r for i, r in read_records(out).items() if r["status"] == "complete"}
    assert before, "validate finished no network before the kill"

    assert main(["validate", str(run), "--epochs", "3", "--seeds", "2", "--train-size", "600", "--quiet"]) == 0
    text = capsys.readouterr().out
    after = read_records(out)
    for i, rec in before.items():  # nothing validated is trained again
        assert after[i]["wall_s"] == rec["wall_s"]
    table = pd.read_csv(out / "validate.csv")
    assert {"no MRLA", "light everywhere", "base everywhere"} <= set("+".join(table["roles"]).split("+"))
    assert (table["val_n"] == 2).all() and "Kendall tau" in text and "verdict:" in text
    assert (out / "validate.png").stat().st_size > 10_000
    keys = [r["key"] for r in after.values() if r["status"] == "complete"]
    assert len(keys) == len(set(keys)) == len(table)

    # the front and the explanation show the validated figures beside the proxy's, each with its recipe
    validated_recipe = "3 epochs on 600 fashion-mnist images at 14 px, 2 seeds"
    assert main(["pareto", str(run)]) == 0
    text = capsys.readouterr().out
    assert "validated (95% CI)" in text and f"(validate/) with {validated_recipe}" in text
    assert main(["explain", str(run), "--csv", str(tmp_path / "effects.csv")]) == 0
    text = capsys.readouterr().out
    assert "MRLA in stage 1:" in text and "MRLA in stage 2:" in text and "importance for accuracy" in text
    assert "proxy accuracy effects against no MRLA in that stage after 1 epoch on 400" in text
    assert f"validated with {validated_recipe} (validate/), against no MRLA: MRLA-light everywhere" in text
    assert (run / "explain.png").exists() and len(pd.read_csv(tmp_path / "effects.csv")) >= 2
    json.loads((out / "manifest.json").read_text())  # the validation is a run of its own


def test_ped_anova_ranks_what_raises_a_maximised_objective():
    """PED-ANOVA looks for what reaches low target values: for accuracy (maximised) it must be told
    the negated value, or it explains what makes networks bad (and agrees with FLOPs' ranking)."""
    import optuna

    from mrla_nas.analysis.explain import importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        t = study.ask()
        good = t.suggest_categorical("good", [0, 1, 2, 3])   # raises accuracy only in its top value
        cheap = t.suggest_categorical("cheap", [0, 1, 2, 3])  # lowers FLOPs only in its bottom value
        noise = t.suggest_categorical("noise", [0, 1, 2, 3])
        study.tell(t, [1.0 * (good == 3) + 0.01 * noise, 1.0 * (cheap != 0) + 0.01 * noise])
    out = importances(study, ["accuracy", "flops"])
    acc, flops = out["accuracy"]["PED-ANOVA"], out["flops"]["PED-ANOVA"]
    assert max(acc, key=acc.get) == "good", acc
    assert max(flops, key=flops.get) == "cheap", flops
