"""ArchConfig: YAML/JSON round trip, canonical keys, building the same network three ways."""
import pytest
import timm
import torch

import mrla_nas
from mrla_nas import ArchConfig, ConfigError, build_model, load_arch
from mrla_nas.cost.flops import count_params

CIFAR = {"block": "basic", "layers": [2, 2, 2], "channels": [16, 32, 64], "stem": "small", "in_chans": 1,
         "num_classes": 10, "stages": ["light", "none", {"form": "base", "heads": 4, "reduction": 8}]}


def test_yaml_and_json_round_trip_with_plain_types(tmp_path):
    arch = ArchConfig.from_dict(CIFAR)
    text = arch.to_yaml()
    assert "!!python" not in text  # plain types only
    assert ArchConfig.from_yaml(text) == arch
    assert ArchConfig.from_json(arch.to_json()) == arch
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    again = load_arch(path)
    assert again == arch and again.to_yaml() == text


def test_yaml_to_model_matches_direct_build(tmp_path):
    arch = ArchConfig.from_dict(CIFAR)
    path = tmp_path / "arch.yaml"
    path.write_text(arch.to_yaml())
    direct = mrla_nas.MRLAResNet(**arch.model_kwargs())
    for model in (build_model(load_arch(path)), build_model(path), timm.create_model("mrla_resnet", arch=str(path)),
                  timm.create_model("mrla_resnet", arch=arch.to_dict())):
        assert count_params(model) == count_params(direct)
        assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in direct.modules()]
    out = timm.create_model("mrla_resnet", arch=arch)(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)


def test_exported_file_with_metrics_loads(tmp_path):
    path = tmp_path / "best.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"arch": ArchConfig.from_dict(CIFAR).to_dict(), "metrics": {"accuracy": 0.9}}))
    assert load_arch(path) == ArchConfig.from_dict(CIFAR)


def test_canonical_key_equal_for_equal_networks():
    a = ArchConfig.from_dict(CIFAR)
    same = dict(CIFAR, stages=[{"form": "light", "heads": 1}, {"form": "none", "heads": 8, "reduction": 4},
                               {"form": "base", "heads": 4, "reduction": 8}], stem_width=16)
    assert ArchConfig.from_dict(same).key() == a.key()
    different = dict(CIFAR, stages=["light", "none", {"form": "base", "heads": 8, "reduction": 8}])
    assert ArchConfig.from_dict(different).key() != a.key()
    assert ArchConfig.from_dict(dict(CIFAR, stages=["base", "none", "base"])).key() != a.key()


@pytest.mark.parametrize("patch,match", [
    ({"blocks": "basic"}, r"arch.blocks: unknown key \(did you mean 'block'\?\)"),
    ({"block": "bottle"}, r"arch.block='bottle'"),
    ({"stem": "big"}, r"arch.stem='big'"),
    ({"layers": [2, 2]}, r"arch.channels: 3 stages, but layers has 2"),
    ({"stages": ["light", "none", {"form": "base", "heads": 3}]}, r"arch.stages\[2\].heads=3: must divide"),
    ({"stages": ["light", "none", {"form": "full"}]}, r"arch.stages\[2\].form='full'"),
    ({"num_classes": 0}, r"arch.num_classes=0"),
])
def test_bad_arch_configs(patch, match):
    with pytest.raises(ConfigError, match=match):
        ArchConfig.from_dict(dict(CIFAR, **patch))
