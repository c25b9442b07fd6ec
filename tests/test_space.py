"""Search spaces: shipped spaces validate, size two ways, deterministic sampling, malformed catalogue."""
import pathlib

import optuna
import pytest
import yaml

from mrla_nas.cli import main
from mrla_nas.space import SearchSpace, load_space
from mrla_nas.space_summary import summarize

SPACES = pathlib.Path(__file__).parent.parent / "search_spaces"
TINY = yaml.safe_load((SPACES / "tiny.yaml").read_text())


@pytest.mark.parametrize("name", ["tiny", "fmnist_resnet20", "cifar10_resnet56", "imagenet_resnet50"])
def test_shipped_spaces_validate(name, tmp_path):
    data = yaml.safe_load((SPACES / f"{name}.yaml").read_text())
    if data["proxy"]["dataset"] in ("cifar10", "imagefolder"):  # user data: point it at a folder that exists
        data["proxy"]["path"] = str(tmp_path)
    space = SearchSpace.from_dict(data)
    assert space.size() > 1
    assert space.search["initial"]


@pytest.mark.parametrize("name", ["tiny", "fmnist_resnet20", "cifar10_resnet56"])
def test_space_size_formula_equals_enumeration(name):
    space = load_space(SPACES / f"{name}.yaml", check_paths=False)
    assert space.size() == len(list(space.enumerate()))


def test_size_counts_equal_networks_once():
    data = dict(TINY, stages={"form": ["none", "light"], "heads": [None, 1], "reduction": [None]})
    space = SearchSpace.from_dict(data)
    # on the 8- and 16-wide stages the paper's default (gcd(C, 32) channels per head) is 1 head, so
    # heads null and heads 1 are one network: per stage none or light -> 2 x 2
    assert space.size() == len(list(space.enumerate())) == 4
    keys = [a.key() for a in space.enumerate()]
    assert len(keys) == len(set(keys))


def _sample_sequence(space, seed, n=12):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
                                directions=["maximize", "minimize"])
    out = []
    for i in range(n):
        trial = study.ask()
        arch = space.sample(trial)
        out.append((arch.key(), dict(trial.params)))
        study.tell(trial, [i % 3 / 3, float(len(arch.summary()))])
    return out


def test_sampling_is_deterministic_and_conditional():
    space = load_space(SPACES / "fmnist_resnet20.yaml")
    a, b = _sample_sequence(space, 7), _sample_sequence(space, 7)
    assert a == b
    assert _sample_sequence(space, 8) != a
    for _, params in a:
        for i in (1, 2, 3):
            if params[f"stage{i}.form"] == "none":
                assert f"stage{i}.reduction" not in params  # only where the stage has MRLA
    names = {n for _, p in a for n in p}
    assert names <= {"stage1.form", "stage2.form", "stage3.form", "stage1.reduction", "stage2.reduction",
                     "stage3.reduction"}


def test_sampled_configs_are_inside_the_space():
    space = load_space(SPACES / "tiny.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        assert space.contains(space.sample(study.ask()))


def test_summary_reference_placements():
    s = summarize(load_space(SPACES / "tiny.yaml"))
    assert set(s.references) == {"none", "light", "base"}
    assert all(inside for inside, _ in s.references.values())
    assert s.flops_range[0] == s.references["none"][1].flops


# ---- the catalogue of malformed spaces: each gives exit 2 and one line naming the field ----------
def _patched(path_value_pairs):
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    for dotted, value in path_value_pairs:
        node = data
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node[k]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return data


_DELETE = object()

MALFORMED = [
    ("unknown top-level key", [("searh", {})], "searh: unknown key (did you mean 'search'?)"),
    ("missing name", [("name", _DELETE)], "name: missing"),
    ("bad name", [("name", "my space")], "name='my space'"),
    ("negative seed", [("seed", -1)], "seed=-1"),
    ("unknown backbone key", [("backbone.blok", "basic")], "backbone.blok: unknown key (did you mean 'block'?)"),
    ("bad block", [("backbone.block", "resnet")], "backbone.block='resnet'"),
    ("bad stem", [("backbone.stem", "7x77")], "backbone.stem='7x77'"),
    ("layers not ints", [("backbone.layers", [1, "two"])], "backbone.layers[1]='two'"),
    ("layers/channels length", [("backbone.channels", [8, 16, 32])], "backbone.channels="),
    ("zero classes", [("backbone.num_classes", 0)], "backbone.num_classes=0"),
    ("empty choice list", [("stages.form", [])], "stages.form=[]: the choice list is empty"),
    ("unknown form", [("stages.form", ["none", "lite"])], "stages.form[1]='lite'"),
    ("unknown stage key", [("stages.head", [2])], "stages.head: unknown key (did you mean 'heads'?)"),
    ("heads do not divide", [("stages.heads", [3])], "stages.heads[0]=3: does not divide the stage width"),
    ("reduction does not divide", [("stages.reduction", [None, 3])], "stages.reduction[1]=3: does not divide"),
    ("heads not int", [("stages.heads", ["many"])], "stages.heads[0]='many'"),
    ("heads and channels_per_head", [("stages.channels_per_head", [4])], "stages: give heads or channels_per_head"),
    ("stage list length", [("stages", [{"form": ["light"]}] * 3)], "stages='<3 entries>'"),
    ("bad objective", [("objectives", {"accuracy": "min", "flops": "min"})], "objectives.accuracy='min'"),
    ("unknown objective", [("objectives", {"accuracy": "max", "flops": "min", "latency": "min"})],
     "objectives.latency: unknown key"),
    ("budget not a number", [("constraints.max_flops", "lots")], "constraints.max_flops='lots'"),
    ("budget nobody meets", [("constraints.max_flops", 1000)], "constraints.max_flops=1000: no config can meet it"),
    ("unknown dataset", [("proxy.dataset", "fmnist")], "proxy.dataset='fmnist'"),
    ("missing dataset folder", [("proxy.path", "/nonexistent/fmnist")], "proxy.path='/nonexistent/fmnist': folder does not exist"),
    ("zero epochs", [("proxy.epochs", 0)], "proxy.epochs=0"),
    ("bad optimizer", [("proxy.optimizer", "adam")], "proxy.optimizer='adam'"),
    ("bad lr", [("proxy.lr", -1)], "proxy.lr=-1"),
    ("bad sampler", [("search.sampler", "cmaes")], "search.sampler='cmaes'"),
    ("bad scheduler", [("search.scheduler", "hyperband")], "search.scheduler='hyperband'"),
    ("zero trials", [("search.trials", 0)], "search.trials=0"),
    ("bad initial placement", [("search.initial", ["none", "heavy"])], "search.initial[1]='heavy'"),
    ("initial outside space", [("stages.form", ["none", "light"]), ("search.initial", ["base"])],
     "search.initial[0]: stage 1 form 'base' is not allowed"),
    ("bad convention", [("flops_convention", "thop")], "flops_convention='thop'"),
]


@pytest.mark.parametrize("what,patch,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_space_exits_2_with_one_line(what, patch, expected, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_patched(patch)))
    assert main(["space", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mrla-nas: error: ")
    assert expected in lines[0], lines[0]


def test_not_yaml_and_missing_file(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["space", str(path)]) == 2
    assert main(["space", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not valid YAML" in err[0] and "does not exist" in err[1]


def test_yaml_is_read_with_a_safe_loader(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["space", str(path)]) == 2
    assert "pwned" not in capsys.readouterr().out
