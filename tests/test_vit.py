"""The ViT backbone as a config and a search space, and `mrla-nas space init` for every backbone."""
import optuna
import pytest
import timm
import yaml

from conftest import DATA
from mrla_nas import build_model
from mrla_nas.arch import arch_from_dict
from mrla_nas.arch.vit import ViTConfig
from mrla_nas.cli import main
from mrla_nas.cost.flops import count_params
from mrla_nas.errors import ConfigError
from mrla_nas.space import SearchSpace, load_space

SPACES = DATA.parent.parent / "search_spaces"
SMALL = {"backbone": "vit", "embed_dim": 64, "depth": 6, "num_heads": 2, "patch_size": 4, "img_size": 28,
         "in_chans": 1, "num_classes": 10, "group_size": 2, "stages": ["light", "none", {"form": "base", "heads": 8}]}


def test_vit_config_round_trip_key_and_build():
    arch = arch_from_dict(SMALL)
    assert isinstance(arch, ViTConfig) and arch.summary() == "vit[64x6,p4] L-B"
    assert ViTConfig.from_yaml(arch.to_yaml()) == arch and arch_from_dict(arch.to_dict()) == arch
    same = arch_from_dict(dict(SMALL, stages=[{"form": "light", "heads": 4}, "none", {"form": "base", "heads": 8}]))
    assert same.key() == arch.key()  # heads null = the DeiTs' 16 channels per head: 4 heads at 64
    assert arch_from_dict(dict(SMALL, mlp_ratio=2)).key() != arch.key()
    model = build_model(arch)
    assert [b.mrla_form for b in model.blocks] == ["light", "light", "none", "none", "base", "base"]
    assert model.blocks[4].mrla.heads == 8 and model.blocks[4].mrla.qkv.Wq is None  # a group's first block
    assert count_params(model) == count_params(timm.create_model("mrla_vit", arch=arch))


@pytest.mark.parametrize("change,expected", [
    ({"num_heads": 3}, "num_heads=3: must divide embed_dim 64"),
    ({"patch_size": 5}, "patch_size=5: must divide img_size 28"),
    ({"stages": ["light"]}, "stages: 1 entries for 3 groups of 2 blocks"),
    ({"stages": ["light", "none", {"form": "base", "heads": 5}]}, "heads=5: must divide the width 64"),
    ({"depth": 10_000}, "depth=10000: expected an integer in [1, 256]"),
    ({"backbone": "vgg"}, "backbone='vgg': allowed: resnet, timm, vit"),
    ({"patches": 4}, "arch.patches: unknown key (did you mean 'patch_size'?)"),
])
def test_vit_config_errors_name_the_field(change, expected):
    with pytest.raises(ConfigError) as e:
        arch_from_dict(dict(SMALL, **change))
    assert expected in str(e.value)


def test_the_shipped_vit_space():
    space = load_space(SPACES / "fmnist_vit.yaml")
    assert space.backbone_type == "vit" and space.size() == len(list(space.enumerate())) == 125
    assert space.backbone["img_size"] == (28,)  # null: the proxy's resolution
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        arch = space.sample(study.ask())
        assert arch.backbone == "vit" and space.contains(arch)
    assert not space.contains(arch_from_dict({"block": "basic", "layers": [1], "channels": [8], "stem": "small",
                                              "stages": ["none"]}))
    frozen = SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict())))
    assert frozen.to_dict() == space.to_dict() and frozen.backbone_type == "vit"


def test_vit_space_rejects_an_image_size_other_than_the_proxys(tmp_path):
    data = yaml.safe_load((SPACES / "fmnist_vit.yaml").read_text())
    data["backbone"]["img_size"] = 32
    with pytest.raises(ConfigError, match="backbone.img_size=32: the proxy trains at proxy.resolution=28"):
        SearchSpace.from_dict(data)


@pytest.mark.parametrize("name", ["mrla_light_resnet20", "mrla_base_resnet50", "mrla_light_deit_tiny_patch16_224",
                                  "mrla_vit"])
def test_space_init_writes_a_space_that_validates(name, tmp_path, capsys):
    out = tmp_path / "space.yaml"
    assert main(["space", "init", name, "-o", str(out)]) == 0
    space = load_space(out)
    assert space.size() == 3 ** len(space.stages)  # the three forms in every stage, with the paper's heads
    text = out.read_text()
    assert "legal: 1, 2, " in text and "legal r: 1, 2, " in text  # every other legal choice, as comments


def test_space_init_from_an_architecture_file_and_its_errors(tmp_path, capsys):
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(SMALL))
    assert main(["space", "init", str(arch)]) == 0
    space = SearchSpace.from_yaml(capsys.readouterr().out)
    assert space.backbone["embed_dim"] == (64,) and len(space.stages) == 3
    assert main(["space", "init", "mrla_light_resnet21"]) == 2
    err = capsys.readouterr().err
    assert "not a registered MRLA model" in err and "did you mean 'mrla_light_resnet20'" in err
