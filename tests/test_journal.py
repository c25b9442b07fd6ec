"""The journal after a crash: a cut last line is set aside before anything is appended; a line corrupt
in the middle is reported with its number and what can be recovered, and `mrla-nas repair` recovers it."""
import json

import optuna
import pytest

from conftest import DATA
from mrla_nas.cli import main
from mrla_nas.errors import ConfigError
from mrla_nas.rundir.journal import describe_corruption, set_aside_partial_tail
from mrla_nas.analysis.run import load_run
from mrla_nas.rundir.files import freeze_space
from mrla_nas.rundir.study import open_study
from mrla_nas.space import load_space

SPACE = DATA.parent.parent / "search_spaces" / "tiny.yaml"


def _run(tmp_path, n=4):
    space = load_space(SPACE)
    run = tmp_path / "run"
    run.mkdir()
    freeze_space(run, space)
    study = open_study(run, space=space)
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(values=[0.5 + i / 10, 100.0 + i], params={}, distributions={}))
    return space, run, run / "study.journal"


def test_a_cut_last_line_is_set_aside_before_the_next_append(tmp_path, capsys):
    space, run, journal = _run(tmp_path)
    data = journal.read_bytes()
    cut = data[:-37]
    journal.write_bytes(cut)  # what a kill in the middle of an append leaves
    assert len(open_study(run).trials) == 3  # Optuna skips the partial line: the last trial's one operation

    study = open_study(run, space=space)  # as `search --resume` opens it
    err = capsys.readouterr().err
    assert "set aside in study.journal.cut-" in err and len(err.strip().splitlines()) == 1
    aside = next(run.glob("study.journal.cut-*"))
    assert aside.read_bytes() == cut[cut.rfind(b"\n") + 1:]
    study.add_trial(optuna.trial.create_trial(values=[0.9, 50.0], params={}, distributions={}))
    assert len(open_study(run).trials) == 4  # the journal reads after the append
    assert main(["pareto", str(run)]) == 0


def test_without_the_fix_the_append_would_corrupt_the_journal(tmp_path):
    # what happened before: the next record written onto the partial line
    _, run, journal = _run(tmp_path)
    journal.write_bytes(journal.read_bytes()[:-37] + b'{"op_code": 4, "worker_id": "x"}\n' + journal.read_bytes()[-37:])
    with pytest.raises(ConfigError, match=r"line \d+ of \d+ is not a complete journal record"):
        open_study(run)


def test_a_line_corrupt_in_the_middle_is_reported_and_repaired(tmp_path, capsys):
    _, run, journal = _run(tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    bad = len(lines) // 2
    lines[bad] = lines[bad][:10] + b"\n"
    journal.write_bytes(b"".join(lines))
    corruption = describe_corruption(journal)
    assert corruption.line == bad + 1 and corruption.lines == len(lines)

    assert main(["pareto", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"line {bad + 1} of {len(lines)}" in err[0] and "mrla-nas repair" in err[0]
    assert "Expecting" not in err[0]  # never a JSON parser's message

    assert main(["repair", str(run)]) == 0
    assert f"kept lines 1-{bad}" in capsys.readouterr().out
    assert len(load_run(run).trials) == corruption.trials_before
    assert next(run.glob("study.journal.corrupt-*")).read_bytes() == b"".join(lines)


@pytest.mark.parametrize("edit", [
    lambda op: dict(op, op_code=99),                                   # an operation Optuna does not know
    lambda op: {k: v for k, v in op.items() if k != "study_id"},       # a field missing
    lambda op: dict(op, state="done"),                                  # a field of another type
], ids=["unknown op_code", "field missing", "field mistyped"])
def test_a_line_that_parses_but_cannot_be_applied_is_reported_and_repaired(edit, tmp_path, capsys):
    # valid JSON that Optuna's replay fails on (an assert, a KeyError, a TypeError): the same one-line
    # report and repair as a cut line, not Optuna's traceback
    _, run, journal = _run(tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    bad = len(lines) - 2  # the third of four trials' creation
    lines[bad] = json.dumps(edit(json.loads(lines[bad]))).encode() + b"\n"
    journal.write_bytes(b"".join(lines))
    assert describe_corruption(journal).line == bad + 1

    assert main(["pareto", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"line {bad + 1} of {len(lines)}" in err[0] and "mrla-nas repair" in err[0]
    assert main(["repair", str(run)]) == 0
    capsys.readouterr()
    assert main(["pareto", str(run)]) == 0


def test_a_damaged_first_line_is_repaired_to_an_empty_journal_a_resume_starts_again(tmp_path, capsys):
    space, run, journal = _run(tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(json.dumps(dict(json.loads(lines[0]), op_code=42)).encode() + b"\n" + b"".join(lines[1:]))
    assert main(["repair", str(run)]) == 0
    assert "kept no line (its first was damaged) (0 trials)" in capsys.readouterr().out
    assert journal.read_bytes() == b""
    assert main(["pareto", str(run)]) == 2
    assert "holds no mrla-nas study" in capsys.readouterr().err
    assert open_study(run, space=space).trials == []  # as a resume opens it: a new study


def test_a_clean_journal_is_left_alone(tmp_path):
    _, run, journal = _run(tmp_path)
    before = journal.read_bytes()
    assert set_aside_partial_tail(journal) is None and describe_corruption(journal) is None
    assert journal.read_bytes() == before


def test_the_study_names_its_objectives(tmp_path):
    space, run, _ = _run(tmp_path)
    assert open_study(run).metric_names == ["accuracy", "flops"]


def test_resuming_with_other_objectives_is_refused(tmp_path):
    import yaml
    space, run, _ = _run(tmp_path)
    data = yaml.safe_load(SPACE.read_text())
    data["objectives"] = {"accuracy": "max", "flops": "min", "params": "min"}
    from mrla_nas.space import SearchSpace
    with pytest.raises(ConfigError, match="optimises 2 objectives"):
        open_study(run, space=SearchSpace.from_dict(data))
