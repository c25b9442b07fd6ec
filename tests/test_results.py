"""Reading runs back: load_run, export selection and its errors, full training of an export."""
import json
import pathlib

import pytest
import torch
import yaml

from conftest import DATA, fake_run
from mrla_nas import ArchConfig, load_arch
from mrla_nas.cli import main
from mrla_nas.analysis.run import load_run
from mrla_nas.rundir.files import record_path
from mrla_nas.arch import arch_from_dict
from mrla_nas.training.full import train


def test_load_run_front_knee_and_reference_rows(tmp_path):
    run = fake_run(tmp_path, [(["none", "none"], "complete", 0.80, 100, 1.0),
                               (["light", "light"], "complete", 0.85, 120, 1.0),
                               (["base", "base"], "stopped", 0.99, 90, 0.5),
                               (["light", "none"], "complete", 0.70, 130, 1.0)])
    r = load_run(run)
    assert r.front["trial_id"].tolist() == [0, 1]
    assert r.knee in (0, 1) and r.trials.loc[2, "status"] == "stopped"
    assert set(r.reference_rows()) == {"none", "light", "base"}


@pytest.mark.parametrize("args,expected", [
    (["--trial", "7"], "--trial=7: no such trial"),
    (["--max-flops", "50"], "--max-flops=50: no front trial is that cheap"),
    (["--min-accuracy", "0.95"], "--min-accuracy=0.95: no front trial reaches it"),
])
def test_export_errors_are_one_line_exit_2(tmp_path, capsys, args, expected):
    run = fake_run(tmp_path, [(["none", "none"], "complete", 0.80, 100, 1.0)])
    assert main(["export", str(run), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def _edit_history(rec, **fields):
    rec["history"][0].update(fields)


@pytest.mark.parametrize("damage,expected", [
    (lambda rec: rec.update(history="epoch 1"), "history='epoch 1': expected a list of epoch reports"),
    (lambda rec: rec.update(history=[None]), "history[0]=None: expected a mapping"),
    (lambda rec: _edit_history(rec, val_accuracy="high"), "history[0].val_accuracy='high': expected a number in [0, 1]"),
    (lambda rec: _edit_history(rec, val_accuracy=7), "history[0].val_accuracy=7"),
    (lambda rec: _edit_history(rec, seeds=[0, 1], val_accuracies=[0.5]), "history[0].val_accuracies=[0.5]: "
                                                                          "expected a list of 2 numbers"),
    (lambda rec: rec.pop("arch"), "arch=None: expected a value: the trial is complete"),
    (lambda rec: rec.update(arch=[1]), "arch=[1]: expected a mapping"),
    (lambda rec: rec["arch"].update(block="wide"), "arch.block='wide': allowed:"),
    (lambda rec: rec.update(key="0000000000000000"), "key='0000000000000000': expected"),
    (lambda rec: rec.update(flops=-5), "flops=-5: expected a non-negative integer"),
    (lambda rec: rec.update(trial_id=3), "trial_id=3: expected 1, the number in the file's name"),
    (lambda rec: rec.update(status="done"), "status='done': expected one of running, complete"),
    (lambda rec: rec.update(fidelity="full"), "fidelity='full'"),
    (None, "not a JSON trial record"),
], ids=["history a string", "epoch not a mapping", "accuracy a string", "accuracy above 1", "per-seed lists short",
        "arch missing", "arch a list", "arch invalid", "key of another network", "negative FLOPs",
        "trial id of another file", "unknown status", "fidelity a string", "not JSON"])
@pytest.mark.parametrize("command", [["pareto"], ["export"], ["table"], ["explain"]])
def test_a_damaged_trial_record_is_one_line_naming_file_and_field(damage, expected, command, tmp_path, capsys):
    run = fake_run(tmp_path, [(["none", "none"], "complete", 0.80, 100, 1.0),
                               (["light", "light"], "complete", 0.85, 120, 1.0)])
    path = record_path(run, 1)
    if damage is None:
        path.write_text(path.read_text()[:-20])
    else:
        rec = json.loads(path.read_text())
        damage(rec)
        path.write_text(json.dumps(rec))
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main([command[0], str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: " in err[0] and expected in err[0], err
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing changed


def test_export_of_empty_and_infeasible_runs(tmp_path, capsys):
    empty = fake_run(tmp_path / "e", [])
    assert main(["export", str(empty)]) == 2
    infeasible = fake_run(tmp_path / "i", [(["base", "base"], "infeasible", None, 10**9, 0.0)])
    assert main(["export", str(infeasible)]) == 2
    assert main(["export", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "no trials yet" in err[0] and "no feasible trial" in err[1] and "not a mrla-nas run directory" in err[2]


def test_export_selection_and_file(tmp_path):
    run = fake_run(tmp_path, [(["none", "none"], "complete", 0.80, 100, 1.0),
                               (["light", "light"], "complete", 0.85, 120, 1.0)])
    out = tmp_path / "x.yaml"
    assert main(["export", str(run), "--max-flops", "110", "-o", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["provenance"]["trial"] == 0 and doc["metrics"]["accuracy"] == 0.80
    assert main(["export", str(run), "--min-accuracy", "0.84", "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["provenance"]["trial"] == 1
    assert load_arch(out).summary().endswith("LL")


def test_build_rejects_a_file_that_is_not_an_arch_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: tiny\nbackbone: {block: basic}\n")
    assert main(["build", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backbone=" in err[0] and "allowed: resnet, timm, vit" in err[0]


def test_train_exported_architecture_resumes_and_reports_test_accuracy(tmp_path, capsys):
    arch = ArchConfig.from_dict({"block": "basic", "layers": [1, 1], "channels": [8, 16], "stem": "small",
                                 "in_chans": 1, "num_classes": 10, "stages": ["light", "base"]})
    f = tmp_path / "best.yaml"
    f.write_text(yaml.safe_dump({"arch": arch.to_dict()}))
    common = ["train", str(f), "--path", str(DATA / "fmnist_slice"), "--train-size", "400", "--resolution", "14",
              "--out", str(tmp_path / "out"), "--epochs", "2"]

    def killed_after_the_first_epoch(line):  # the checkpoint is written before the epoch's line
        if line.startswith("epoch 1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(f, tmp_path / "out", log=killed_after_the_first_epoch, path=str(DATA / "fmnist_slice"),
              train_size=400, resolution=14, epochs=2)
    ckpt = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert ckpt["trainer"]["epoch"] == 1
    assert main(common) == 0
    out = capsys.readouterr().out
    assert "resuming from epoch 1" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["test_size"] == 300 and 0 <= result["test_accuracy"] <= 1
    assert torch.load(tmp_path / "out" / "model.pt", weights_only=True)


@pytest.mark.parametrize("change,expected", [
    (["--epochs", "2"], "--epochs=2: the checkpoint {ckpt} was trained with epochs=1 (its learning-rate schedule"),
    (["--lr", "0.5"], "--lr=0.5: the checkpoint {ckpt} was trained with lr=0.1;"),
    (["--train-size", "300"], "--train-size=300: the checkpoint {ckpt} was trained with train_size=400;"),
])
def test_train_resumes_only_the_recipe_it_was_trained_with(change, expected, tmp_path, capsys):
    # the optimizer, the cosine schedule, the data subset and the RNG come back as they were: another
    # value would be ignored or mixed in, and result.json would record it
    f = tmp_path / "best.yaml"
    f.write_text(ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small",
                                       "in_chans": 1}).to_yaml())
    common = ["train", str(f), "--path", str(DATA / "fmnist_slice"), "--train-size", "400", "--resolution", "14",
              "--out", str(tmp_path / "out"), "--epochs", "1"]
    assert main(common) == 0
    ckpt = tmp_path / "out" / "checkpoint.pt"
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert main(common + change + ["--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected.format(ckpt=ckpt) in err[0], err
    assert ckpt.read_bytes() == before
    assert main(common + ["--threads", "1"]) == 0  # threads change nothing that is computed


def test_train_refuses_a_resolution_the_architecture_cannot_take(tmp_path, capsys):
    f = tmp_path / "best.yaml"
    f.write_text(arch_from_dict({"backbone": "vit", "embed_dim": 16, "depth": 2, "num_heads": 2, "patch_size": 4,
                                   "img_size": 28, "in_chans": 1, "stages": ["light"]}).to_yaml())
    assert main(["train", str(f), "--path", str(DATA / "fmnist_slice"), "--resolution", "14",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resolution=14: this ViT takes 28 px images" in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("checkpoint", [b"", b"not a checkpoint", None], ids=["empty", "garbage", "foreign"])
def test_train_with_a_damaged_checkpoint_is_one_line_and_keeps_it(checkpoint, tmp_path, capsys):
    f = tmp_path / "best.yaml"
    f.write_text(yaml.safe_dump({"arch": ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8],
                                                               "stem": "small", "in_chans": 1}).to_dict()}))
    ckpt = tmp_path / "out" / "checkpoint.pt"
    ckpt.parent.mkdir()
    if checkpoint is None:
        torch.save({"weights": torch.zeros(2)}, ckpt)  # a torch file, not ours
    else:
        ckpt.write_bytes(checkpoint)
    before = ckpt.read_bytes()
    assert main(["train", str(f), "--path", str(DATA / "fmnist_slice"), "--out", str(ckpt.parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{ckpt}: not a mrla-nas training checkpoint" in err[0] and "delete it" in err[0], err
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("flag,expected", [(["--batch-size", "1"], "batch_size=1: expected at least 2"),
                                           (["--train-size", "1"], "train_size=1: expected at least 2"),
                                           (["--resolution", "1", "--augmentation", "crop_flip"],
                                            "resolution=1: augmentation 'crop_flip' pads 1 px by reflection")])
def test_train_refuses_a_recipe_under_which_nothing_would_train(flag, expected, tmp_path, capsys):
    f = tmp_path / "best.yaml"
    f.write_text(ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small",
                                       "in_chans": 1}).to_yaml())
    assert main(["train", str(f), "--path", str(DATA / "fmnist_slice"), "--out", str(tmp_path / "out"), *flag]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize("provenance,expected", [
    (3.5, "provenance=3.5: expected a mapping"),
    ({"proxy": [1]}, "provenance.proxy=[1]: expected a mapping"),
    ({"run": 7}, "provenance.run=7: expected the run directory's path"),
    ({"proxy": {"dataset": "svhn"}}, "provenance.proxy.dataset='svhn': allowed: fashion-mnist"),
    ({"proxy": {"resolution": "big"}}, "provenance.proxy.resolution='big': expected an integer"),
    ({"proxy": {"lr": "fast"}}, "provenance.proxy.lr='fast': expected"),
    ({"proxy": {"optimizer": "adam"}}, "provenance.proxy.optimizer='adam': allowed: sgd, adamw"),
    ({"proxy": {"batch_size": 1}}, "provenance.proxy.batch_size=1: expected at least 2"),
])
def test_train_checks_what_the_export_records(provenance, expected, tmp_path, capsys):
    f = tmp_path / "best.yaml"
    arch = ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small", "in_chans": 1})
    f.write_text(yaml.safe_dump({"arch": arch.to_dict(), "provenance": provenance}))
    assert main(["train", str(f), "--path", str(DATA / "fmnist_slice"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{f}: {expected}" in err[0], err


def test_train_takes_the_searchs_optimizer_unless_told(tmp_path):
    # a ViT searched with AdamW at lr 2e-3 was trained with SGD at lr 0.1 (DEFAULTS) by `train`
    from mrla_nas.training.full import DEFAULTS, recipe_for
    vit_space = pathlib.Path(__file__).parent.parent / "search_spaces" / "fmnist_vit.yaml"
    run = fake_run(tmp_path, [(["none", "none", "none"], "complete", 0.8, 100, 1.0)], space_file=vit_space)
    from mrla_nas.analysis.export import export
    from mrla_nas.analysis.run import load_run
    r = load_run(run)
    f = export(r, r.front.iloc[0], tmp_path / "best.yaml")
    recipe = recipe_for(f)
    assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"], recipe["batch_size"]) == ("adamw", 2e-3, 0.05, 64)
    assert recipe["epochs"] == DEFAULTS["epochs"] and recipe["train_size"] is None  # a full training's own
    assert recipe_for(f, lr=1e-3, optimizer="sgd")["lr"] == 1e-3
    # the export alone (its run moved away) still carries the recipe
    doc = yaml.safe_load(f.read_text())
    doc["provenance"]["run"] = str(tmp_path / "gone")
    f.write_text(yaml.safe_dump(doc))
    assert recipe_for(f, path=str(DATA / "fmnist_slice"))["optimizer"] == "adamw"
    # an export without any (an older mrla-nas) takes the run's space
    del doc["provenance"]["proxy"]["optimizer"], doc["provenance"]["proxy"]["lr"]
    doc["provenance"]["run"] = str(run)
    f.write_text(yaml.safe_dump(doc))
    assert (recipe_for(f)["optimizer"], recipe_for(f)["lr"]) == ("adamw", 2e-3)


def test_the_front_says_an_accuracy_on_the_test_split_is_one(tmp_path, capsys):
    # a validation run's own folder (`mrla-nas pareto RUN/validate`) scores the test split it was asked for
    data = yaml.safe_load((DATA.parent.parent / "search_spaces" / "tiny.yaml").read_text())
    data["proxy"].update(val_split="test", val_size=1000)
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(data))
    run = fake_run(tmp_path, [(["none", "none"], "complete", 0.80, 100, 1.0)], space_file)
    assert main(["pareto", str(run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy: on the 1,000-image test split after 1 epoch on 512 fashion-mnist images" in out
    assert "the proxy's validation accuracy" not in out


def test_pareto_overlays_several_runs(tmp_path, capsys):
    a = fake_run(tmp_path / "a", [(["none", "none"], "complete", 0.80, 100, 1.0),
                                   (["light", "light"], "complete", 0.85, 120, 1.0)])
    b = fake_run(tmp_path / "b", [(["base", "base"], "complete", 0.83, 110, 1.0)])
    out_csv = tmp_path / "fronts.csv"
    assert main(["pareto", str(a), str(b), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert out.count("hypervolume") == 2 and "* = knee" in out
    # which proxy measured the accuracies (the tiny space's), and no validated column where none ran
    assert out.count("the proxy's validation accuracy after 1 epoch on 512 fashion-mnist images at 14 px, 1 seed") == 2
    assert "validated" not in out
    import pandas as pd
    fronts = pd.read_csv(out_csv)
    assert set(fronts["run"]) == {str(a), str(b)} and len(fronts) == 3
    # each run's folder keeps its own front; the overlay goes beside it, not over a's plot
    assert len(pd.read_csv(a / "pareto.csv")) == 2 and len(pd.read_csv(b / "pareto.csv")) == 1
    assert all((r / "pareto.png").stat().st_size > 10_000 for r in (a, b))
    assert (a / "pareto-overlay.png").stat().st_size > 10_000
    assert str(b / "pareto.csv") in out and str(a / "pareto-overlay.png") in out
    capsys.readouterr()
    assert main(["pareto", str(a), str(a) + "/"]) == 0  # one run named twice is one run
    assert capsys.readouterr().out.count("hypervolume") == 1
    assert main(["pareto", str(a), str(b), "--plot", str(tmp_path / "both.pdf")]) == 0
    assert (tmp_path / "both.pdf").read_bytes()[:4] == b"%PDF"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # argparse's usage error, before any work
        main(["pareto", str(a), "--plot", str(tmp_path / "both.txt")])
    assert e.value.code == 2 and "allowed file types: .png" in capsys.readouterr().err


def test_the_front_names_each_rows_backbone_choice(tmp_path, capsys):
    # two stems (or widths) with the same stage choices read the same in the summary column
    text = (pathlib.Path(__file__).parent.parent / "search_spaces" / "tiny.yaml").read_text()
    space = tmp_path / "space.yaml"
    space.write_text(text.replace("  stem: small\n", "  stem: {choices: [small, deep]}\n"))
    run = fake_run(tmp_path, [(["light", "light"], "complete", 0.80, 100, 1.0, 0),
                              (["light", "light"], "complete", 0.85, 150, 1.0, 1)], space_file=space)
    assert main(["pareto", str(run)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "basic[1,1]" in line]
    assert len(rows) == 2 and "stem=small" in rows[0] and "stem=deep" in rows[1], rows
    assert main(["pareto", str(fake_run(tmp_path / "one", [(["none", "none"], "complete", 0.8, 100, 1.0)]))]) == 0
    assert "backbone" not in capsys.readouterr().out  # one backbone: no column


def test_pareto_refuses_to_overlay_fronts_counted_differently(tmp_path, capsys):
    a = fake_run(tmp_path / "a", [(["none", "none"], "complete", 0.80, 100, 1.0)])
    b = fake_run(tmp_path / "b", [(["base", "base"], "complete", 0.83, 110, 1.0)])
    frozen = b / "space.yaml"
    frozen.write_text(frozen.read_text().replace("flops_convention: fvcore", "flops_convention: complete"))
    assert load_run(b).space.flops_convention == "complete"
    assert main(["pareto", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "count FLOPs differently" in err[0] and f"{b}: complete" in err[0]
    assert not (a / "pareto-overlay.png").exists()


def test_train_on_another_dataset_than_the_search_needs_its_path(tmp_path, capsys):
    # the search's folder holds its own dataset, and MNIST's files are named as Fashion-MNIST's: that
    # folder trained Fashion-MNIST under the name MNIST
    run = fake_run(tmp_path, [(["none", "none"], "complete", 0.8, 100, 1.0)])
    f = tmp_path / "best.yaml"
    arch = ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small", "in_chans": 1})
    f.write_text(yaml.safe_dump({"arch": arch.to_dict(),
                                 "provenance": {"run": str(run), "proxy": {"dataset": "fashion-mnist"}}}))
    assert main(["train", str(f), "--dataset", "mnist", "--epochs", "1", "--train-size", "100",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--path: required for dataset 'mnist'" in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out,expected", [("afile", "--out='{tmp}/afile': '{tmp}/afile' is a file, not a folder"),
                                          ("afile/x", "--out='{tmp}/afile/x': '{tmp}/afile' is a file"),
                                          (None, "--out (default '{tmp}/best-train'): '{tmp}/best-train' is a file")])
def test_train_into_a_file_is_one_line_before_any_work(out, expected, tmp_path, capsys):
    f = tmp_path / "best.yaml"
    f.write_text(ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small",
                                       "in_chans": 1}).to_yaml())
    (tmp_path / "afile").write_text("")
    (tmp_path / "best-train").write_text("")
    args = [] if out is None else ["--out", str(tmp_path / out)]
    assert main(["train", str(f), "--path", str(DATA / "fmnist_slice"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected.format(tmp=tmp_path) in err[0], err


def test_train_names_its_own_path_flag_when_the_data_is_missing(tmp_path, capsys):
    f = tmp_path / "best.yaml"
    f.write_text(ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small",
                                       "in_chans": 1}).to_yaml())
    (tmp_path / "empty").mkdir()
    assert main(["train", str(f), "--dataset", "mnist", "--path", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mrla-nas: error: --path='{tmp_path / 'empty'}': no train-images"), err
    assert "proxy.path" not in err[0] and not (tmp_path / "out").exists()


def test_train_resumes_with_the_same_data_folder_written_another_way(tmp_path, capsys):
    f = tmp_path / "best.yaml"
    f.write_text(ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small",
                                       "in_chans": 1}).to_yaml())
    common = ["train", str(f), "--train-size", "100", "--resolution", "14", "--out", str(tmp_path / "out"),
              "--epochs", "1"]
    assert main(common + ["--path", str(DATA / "fmnist_slice")]) == 0
    assert main(common + ["--path", str(DATA / "fmnist_slice") + "/."]) == 0
    assert "resuming from epoch 1" in capsys.readouterr().out
