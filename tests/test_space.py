"""Search spaces: shipped spaces validate, size two ways, deterministic sampling (malformed files: test_malformed.py)."""
import pathlib

import optuna
import pytest
import yaml

from mrla_nas.space import SearchSpace, load_space
from mrla_nas.space.summary import summarize

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


def test_size_and_enumeration_agree_when_choices_build_the_same_network():
    # stem_width null is the small stem's 16: the two choices are one backbone, not two
    data = dict(TINY, backbone=dict(TINY["backbone"], channels=[16, 32], stem_width={"choices": [None, 16]},
                                    drop_path_rate={"choices": [0, 0.0]}))
    space = SearchSpace.from_dict(data)
    keys = [a.key() for a in space.enumerate()]
    assert space.size() == len(keys) == len(set(keys)) == 25
    assert len(space.distinct_backbones()) == 1
