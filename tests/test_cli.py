"""The command line: which errors are the user's (one line, exit 2) and which are bugs (traceback),
and `build` counting at the input an exported file records."""
from pathlib import Path

import pytest
import yaml

import mrla_nas.space.summary
from mrla_nas import ArchConfig, build_model
from mrla_nas.cli import main
from mrla_nas.cost.flops import measure

SPACE = Path(__file__).parent.parent / "search_spaces" / "tiny.yaml"
ARCH = ArchConfig.from_dict({"block": "basic", "layers": [1, 1], "channels": [8, 16], "stem": "small",
                             "in_chans": 1, "num_classes": 10, "stages": ["light", "base"]})


def test_an_internal_error_is_a_bug_with_its_traceback(monkeypatch, tmp_path):
    def broken(space):
        raise ValueError("an internal invariant broke")  # not the user's input: must not become exit 2

    monkeypatch.setattr(mrla_nas.space.summary, "summarize", broken)
    space = tmp_path / "space.yaml"
    space.write_text("name: t\nproxy: {path: " + str(tmp_path) + "}\n")
    with pytest.raises(ValueError, match="internal invariant"):
        main(["space", str(space)])


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["build", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def _exported(tmp_path, size):
    flops = measure(build_model(ARCH), (1, 1, size, size)).flops
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({"arch": ARCH.to_dict(), "metrics": {
        "flops": flops, "params": 1, "flops_convention": "fvcore", "input_shape": [1, 1, size, size]}}))
    return path, flops


def test_build_counts_at_the_recorded_input_and_says_so(tmp_path, capsys):
    path, flops = _exported(tmp_path, 28)
    assert main(["build", str(path)]) == 0
    out = capsys.readouterr().out
    assert "input (1, 28, 28) (recorded in the file)" in out and f"FLOPs {flops:,} (fvcore)" in out
    assert main(["build", str(path), "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "input (1, 32, 32) (--input-size)" in out and f"FLOPs {flops:,}" not in out


def _with_metrics(path, **metrics):
    doc = yaml.safe_load(path.read_text())
    doc["metrics"].update(metrics)
    path.write_text(yaml.safe_dump(doc))


def test_build_of_a_file_with_an_unknown_flops_convention_names_the_field(tmp_path, capsys):
    path, _ = _exported(tmp_path, 28)
    _with_metrics(path, flops_convention=-1)
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.flops_convention=-1: allowed: fvcore, complete" in err[0]
    assert main(["build", str(path), "--convention", "fvcore"]) == 2  # a malformed export is one, flag or not


@pytest.mark.parametrize("field,value", [("flops", "many"), ("flops", -5), ("params", 1.5), ("params", True)])
def test_build_of_a_file_whose_recorded_count_is_not_a_count_names_the_field(field, value, tmp_path, capsys):
    path, _ = _exported(tmp_path, 28)
    _with_metrics(path, **{field: value})
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"metrics.{field}=" in err[0] and "expected a whole number >= 0" in err[0]


@pytest.mark.parametrize("shape", [[1, 28], [True, 1, 28, 28], [1, 1, 28.0, 28], [64, 1, 28, 28],
                                   [1, 1, 10 ** 9, 10 ** 9], [1, 3, 28, 28], [1, 1, 28, 20], "1x28x28"])
def test_build_of_a_recorded_input_this_network_cannot_take_is_one_line(shape, tmp_path, capsys):
    # counted at a default size instead, the FLOPs printed would silently be another network's cost
    path, _ = _exported(tmp_path, 28)
    _with_metrics(path, input_shape=shape)
    assert main(["build", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "metrics.input_shape" in err[0] and "FLOPs" not in captured.out
    assert main(["build", str(path), "--input-size", "28"]) == 2  # the file is wrong whatever the flag


def test_build_of_a_file_whose_metrics_is_not_a_mapping_names_it(tmp_path, capsys):
    path, _ = _exported(tmp_path, 28)
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(dict(doc, metrics=[1, 28])))
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics=[1, 28]: expected a mapping" in err[0]


@pytest.mark.parametrize("field,value", [("block", ["basic"]), ("stem", {"small": 1})])
def test_build_of_an_unhashable_block_or_stem_is_one_line(field, value, tmp_path, capsys):
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(dict(ARCH.to_dict(), **{field: value})))
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f".{field}=" in err[0] and "allowed:" in err[0]


def test_build_of_a_plain_config_uses_the_stem_default(tmp_path, capsys):
    path = tmp_path / "arch.yaml"
    path.write_text(ARCH.to_yaml())
    assert main(["build", str(path)]) == 0
    assert "input (1, 32, 32) (default for this resnet" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["build", "x.yaml", "--input-size", "0"], ["build", "x.yaml", "--input-size", "1e9"],
                                  ["train", "x.yaml", "--lr", "nan"], ["search", "x.yaml", "--trials", "-3"]])
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: argument" in err[0] and "expected" in err[0] and "-h` for usage" in err[0], err


@pytest.mark.parametrize("argv", [[], ["serach", "x.yaml"], ["search"], ["export", "r", "--knee", "--trial", "1"],
                                  ["train", "x.yaml", "--optimizer", "adam"], ["pareto", "r", "--nope"]])
def test_every_usage_error_is_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mrla-nas") and "error:" in err[0], err


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".", "..", ""])
@pytest.mark.parametrize("command", ["search", "validate"])
def test_a_run_name_is_one_folder_inside_its_parent(command, name, tmp_path, capsys):
    # a validation named "." would resume the searched run itself; "../x" would write beside it
    target = str(SPACE) if command == "search" else str(tmp_path / "run")
    assert main([command, target, "--name", name, "--quiet"] + (["--runs-dir", str(tmp_path)] if command == "search"
                                                                 else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--name={name!r}: expected 1 to 100 letters" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_cost_of_an_architecture_file_points_to_build(tmp_path, capsys):
    f = tmp_path / "best.yaml"
    f.write_text("arch: {}\n")
    assert main(["cost", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"`mrla-nas build {f}`" in err[0], err


def test_cost_builds_a_vit_for_the_input_size_it_is_asked_about(capsys):
    assert main(["cost", "vit_tiny_patch16_224", "mrla_light_deit_tiny_patch16_224", "--input-size", "64"]) == 0
    assert "mrla_light_deit_tiny_patch16_224" in capsys.readouterr().out
    assert main(["cost", "vit_tiny_patch16_224", "--input-size", "100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--input-size=100: vit_tiny_patch16_224 takes sides that are a multiple of its patch " \
                             "size 16" in err[0], err


@pytest.mark.parametrize("argv", [["space", "init", "mrla_light_resnet20", "-o", "{missing}/space.yaml"],
                                  ["pareto", "run", "--csv", "{missing}/front.csv"],
                                  ["explain", "run", "--csv", "{missing}/effects.csv"],
                                  ["table", "run", "-o", "{missing}/table.csv"],
                                  ["export", "run", "-o", "{missing}/best.yaml"],
                                  ["export", "run", "-o", "{folder}"]])
def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(argv, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "missing", folder=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("does not exist" in err[0] or "is a folder" in err[0]), err
