"""Seeded random damage to everything a user hands the CLI: every outcome is a result (exit 0) or one
line on stderr (exit 2), never a traceback. Each bug these found got its own test elsewhere; this
keeps the whole surface covered (search spaces, architecture files, run directories)."""
import contextlib
import copy
import io
import json
import random
import shutil

import pytest
import yaml

from conftest import DATA, fake_run
from mrla_nas.cli import main
from mrla_nas.space import load_space

SPACES = DATA.parent.parent / "search_spaces"
VALUES = [None, True, False, 0, -1, 1, 2, 3, 7, 10 ** 9, -10 ** 9, 0.5, -0.5, 1e308, float("nan"), float("inf"), "",
          "x", "none", "light", "base", "1M", "-1M", [], [None], [1, 2], [[]], {}, {"a": 1}, ["light"], [0], [-1],
          "basic", "bottleneck", "vit", "tpe", "moasha", [3, 3], [8], [1] * 9]


def _paths(d, pre=()):
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else []
    for k, v in items:
        yield pre + (k,)
        yield from _paths(v, pre + (k,))


def _damage(d, rng, times):
    """``d`` with ``times`` values (anywhere in it) replaced by or deleted for unusual ones."""
    d = copy.deepcopy(d)
    for _ in range(times):
        path = rng.choice(list(_paths(d)) or [None])
        if path is None:
            break
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        if rng.random() < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
    return d


def _outcome(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    lines = err.getvalue().strip().splitlines()
    assert rc in (0, 2), (argv, rc, lines)
    if rc == 2:
        assert len([ln for ln in lines if "error" in ln]) == 1, (argv, lines)


@pytest.mark.parametrize("seed", range(4))
def test_damaged_search_spaces(seed, tmp_path):
    rng = random.Random(seed)
    spaces = [yaml.safe_load(p.read_text()) for p in sorted(SPACES.glob("*.yaml"))]
    for space in spaces:  # ResNet-50's FLOPs take seconds to count; the checks do not need its depth and size
        space["proxy"]["resolution"] = min(space["proxy"].get("resolution", 28), 32)
        if space["backbone"].get("layers") == [3, 4, 6, 3]:
            space["backbone"]["layers"] = [1, 1, 1, 1]
    path = tmp_path / "space.yaml"
    for _ in range(60):
        path.write_text(yaml.safe_dump(_damage(rng.choice(spaces), rng, rng.choice([1, 1, 2, 3]))))
        _outcome(["space", str(path), "--no-path-check"])


@pytest.mark.parametrize("seed", range(2))
def test_damaged_architecture_files(seed, tmp_path):
    rng = random.Random(seed)
    docs = [a.to_dict() for p in ("tiny.yaml", "fmnist_vit.yaml")
            for a in load_space(SPACES / p, check_paths=False).initial_configs()]
    path = tmp_path / "arch.yaml"
    for _ in range(40):
        doc = rng.choice(docs)
        if rng.random() < 0.4:
            doc = {"arch": doc, "metrics": {"input_shape": [1, 1, 14, 14], "flops": 100, "flops_convention": "fvcore"}}
        path.write_text(yaml.safe_dump(_damage(doc, rng, rng.choice([1, 2]))))
        _outcome(["build", str(path)] + (["--input-size", "14"] if rng.random() < 0.5 else []))


def test_damaged_run_directories(tmp_path):
    rng = random.Random(0)
    clean = fake_run(tmp_path / "clean", [(["none", "none"], "complete", 0.80, 100, 1.0),
                                          (["light", "light"], "complete", 0.85, 120, 1.0),
                                          (["base", "base"], "complete", 0.83, 90, 1.0)])
    for i in range(40):
        run = tmp_path / f"r{i}"
        shutil.copytree(clean, run)
        target = rng.choice(sorted(run.glob("trials/*.json")) * 2 + [run / "study.journal", run / "space.yaml"])
        if target.suffix == ".json":
            target.write_text(json.dumps(_damage(json.loads(target.read_text()), rng, rng.choice([1, 2]))))
        elif target.suffix == ".yaml":
            target.write_text(yaml.safe_dump(_damage(yaml.safe_load(target.read_text()), rng, 1)))
        else:  # a journal line cut, dropped, repeated or with one field changed
            lines = target.read_text().splitlines(True)
            j, how = rng.randrange(len(lines)), rng.random()
            if how < 0.25:
                lines[j] = lines[j][:rng.randrange(len(lines[j]))] + "\n"
            elif how < 0.5:
                del lines[j]
            elif how < 0.75:
                lines.insert(j, lines[rng.randrange(len(lines))])
            else:
                lines[j] = json.dumps(_damage(json.loads(lines[j]), rng, 1)) + "\n"
            target.write_text("".join(lines))
        for command in (["pareto"], ["export", "-o", str(tmp_path / "best.yaml")], ["table", "-o",
                                                                                       str(tmp_path / "t.csv")]):
            _outcome([command[0], str(run), *command[1:]])
