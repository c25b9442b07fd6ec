"""mrla-nas reproduces the tensors of the official MRLA implementation (tests/data/reference)."""
import contextlib

import pytest
import torch

from conftest import load_reference, rel_err, unit_state_dict
from mrla_nas.layers import MRLABase, MRLALight, cpu_ops
from mrla_nas.models import from_official_state_dict

TOL = 1e-5


def test_light_layer_matches_official():
    ref = load_reference("mrla_light_layer")
    unit = MRLALight(ref["channels"], heads=ref["heads"], kernel_size=ref["k_size"]).eval()
    unit.load_state_dict(unit_state_dict(ref["state_dict"]))
    with torch.no_grad():
        out = unit(ref["x"], ref["o_prev"])
    assert rel_err(out, ref["output"]) <= TOL


def test_base_layers_match_official_including_memory():
    ref = load_reference("mrla_base_layer")
    memory = None
    for sd, x, expected in zip(ref["state_dicts"], ref["xs"], ref["outputs"]):
        unit = MRLABase(ref["channels"], heads=ref["heads"], kernel_size=ref["k_size"]).eval()
        unit.load_state_dict(unit_state_dict(sd))
        with torch.no_grad():
            out, memory = unit(x, memory)
        assert rel_err(out, expected) <= TOL
    assert rel_err(memory.K, ref["final_K"]) <= TOL
    assert rel_err(memory.V, ref["final_V"]) <= TOL


@pytest.mark.parametrize("name,form,stem", [("mrla_light_resnet_w16_2222", "light", "7x7"),
                                            ("mrla_base_resnet_w16_2222", "base", "deep")])
def test_whole_networks_match_official_through_converter(name, form, stem):
    ref = load_reference(name)
    model = from_official_state_dict(ref["state_dict"]).eval()
    assert [s["form"] for s in model.stage_specs] == [form] * 4
    assert model.feature_info[1]["num_chs"] == ref["stage_channels"][0]
    assert isinstance(model.conv1, torch.nn.Sequential) == (stem == "deep")
    with torch.no_grad():
        out = model(ref["input"])
    assert rel_err(out, ref["output"]) <= TOL


def test_converter_accepts_ddp_prefix_and_wrapper():
    ref = load_reference("mrla_light_resnet_w16_2222")
    wrapped = {"state_dict": {f"module.{k}": v for k, v in ref["state_dict"].items()}, "epoch": 3}
    model = from_official_state_dict(wrapped, "light").eval()
    with torch.no_grad():
        assert rel_err(model(ref["input"]), ref["output"]) <= TOL


def test_converter_new_num_classes_keeps_backbone():
    ref = load_reference("mrla_base_resnet_w16_2222")
    model = from_official_state_dict(ref["state_dict"], "base", num_classes=3)
    assert model.fc.out_features == 3
    assert torch.equal(model.layer2[0].mrla.qkv.Wv.weight, ref["state_dict"]["stages.1.0.mrla.mrla.Wv.weight"])


def test_converter_errors_are_clear():
    ref = load_reference("mrla_light_resnet_w16_2222")
    with pytest.raises(ValueError, match="MRLA-light"):
        from_official_state_dict(ref["state_dict"], "base")
    broken = dict(ref["state_dict"])
    broken["layer2.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unmapped.*layer2.0.extra.weight"):
        from_official_state_dict(broken)
    with pytest.raises(ValueError, match="stem"):
        from_official_state_dict({"fc.weight": torch.zeros(10, 512)})


@pytest.mark.parametrize("name,form", [("mrla_light_deit_e64_d8", "light"), ("mrla_base_deit_e64_d8", "base")])
def test_deit_networks_and_every_block_match_official_through_converter(name, form):
    ref = load_reference(name)
    model = from_official_state_dict(ref["state_dict"], num_heads=ref["config"]["num_heads"]).eval()
    assert [s["form"] for s in model.mrla_specs] == [form, form] and model.mrla_group_size == 4
    blocks = []
    hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o[0])) for b in model.blocks]
    for plain in (False, True):  # the C++ kernels and the plain PyTorch path
        blocks.clear()
        with torch.no_grad(), (cpu_ops.plain_pytorch() if plain else contextlib.nullcontext()):
            out = model(ref["input"])
        assert rel_err(out, ref["output"]) <= TOL
        assert len(blocks) == len(ref["block_outputs"]) == 8
        for got, expected in zip(blocks, ref["block_outputs"]):
            assert rel_err(got, expected) <= TOL
    for h in hooks:
        h.remove()


def test_deit_converter_takes_the_official_dim_mrla():
    # MRLA's channels per head are not in the weights: the official config's dim_mrla says them
    ref = load_reference("mrla_light_deit_e64_d8")
    kw = dict(num_heads=ref["config"]["num_heads"])
    model = from_official_state_dict(ref["state_dict"], dim_mrla=ref["config"]["dim_mrla"], **kw).eval()
    assert model.blocks[0].mrla.heads == 64 // ref["config"]["dim_mrla"]
    with torch.no_grad():
        assert rel_err(model(ref["input"]), ref["output"]) <= TOL
    other = from_official_state_dict(ref["state_dict"], dim_mrla=8, **kw).eval()
    assert other.blocks[0].mrla.heads == 8
    first = []
    other.blocks[0].register_forward_hook(lambda m, i, o: first.append(o[0]))
    with torch.no_grad():
        other(ref["input"])
    assert rel_err(first[0], ref["block_outputs"][0]) > 1e-4  # the heads matter
    # read as the official code reads it: int(64 / 24) = 2 heads of 32 channels
    assert from_official_state_dict(ref["state_dict"], dim_mrla=24, **kw).blocks[0].mrla.heads == 2
    with pytest.raises(ValueError, match=r"dim_mrla=3 with embed dim 64: int\(64 / 3\) heads do not divide"):
        from_official_state_dict(ref["state_dict"], dim_mrla=3, **kw)
    for bad in (0, True, 16.0):
        with pytest.raises(ValueError, match="expected a positive integer"):
            from_official_state_dict(ref["state_dict"], dim_mrla=bad, **kw)
    with pytest.raises(ValueError, match="a DeiT checkpoint's"):
        from_official_state_dict(load_reference("mrla_light_resnet_w16_2222")["state_dict"], dim_mrla=16)


def _with(sd, drop=(), **entries):
    out = {k: v for k, v in sd.items() if not any(k.startswith(d) for d in drop)}
    out.update({k.replace("__", "."): v for k, v in entries.items()})
    return out


@pytest.mark.parametrize("case,match", [
    ("a list", "a mapping of names to tensors"),
    ("an int key", "checkpoint key 1 is a int"),
    ("a Wv of other channels", r"'layer1.0.mrla.qkv.Wv.weight' has shape \[3, 1, 3, 3\]; .* expects \[64, 1, 3, 3\]"),
    ("a lambda without its trailing dims", r"'layer1.0.mrla.lambda_t' has shape \[64\]; .* expects \[64, 1, 1\]"),
    ("a classifier of other width", r"'fc.weight' has shape \[10, 7\]"),
    ("a stage without its block 0", r"stage 1's blocks \[1\] are not numbered 0, 1"),
    ("a 2-d conv", r"'layer1.0.conv1.weight' has shape \[16, 64\]; expected 4 dimensions"),
    ("no classifier", "has no fc.weight"),
])
def test_converter_names_what_is_wrong_with_a_malformed_resnet_checkpoint(case, match):
    sd = load_reference("mrla_light_resnet_w16_2222")["state_dict"]
    bad = {"a list": [1, 2], "an int key": {1: torch.zeros(1)},
           "a Wv of other channels": _with(sd, layer1__0__mrla__mrla__Wv__weight=torch.zeros(3, 1, 3, 3)),
           "a lambda without its trailing dims": _with(sd, layer1__0__mrla__lambda_t=torch.zeros(64)),
           "a classifier of other width": _with(sd, fc__weight=torch.zeros(10, 7)),
           "a stage without its block 0": _with(sd, drop=("layer1.0.",)),
           "a 2-d conv": _with(sd, layer1__0__conv1__weight=torch.zeros(16, 64)),
           "no classifier": _with(sd, drop=("fc.",))}[case]
    with pytest.raises(ValueError, match=match):
        from_official_state_dict(bad)


def test_converter_names_what_is_wrong_with_a_deit_checkpoint_and_takes_a_headless_one():
    ref = load_reference("mrla_light_deit_e64_d8")
    sd = ref["state_dict"]
    for heads in (3, 0, True):
        with pytest.raises(ValueError, match=f"num_heads={heads!r}: expected a positive integer dividing the embed dim 64"):
            from_official_state_dict(sd, num_heads=heads)
    with pytest.raises(ValueError, match=r"'blocks.0.mrla.lambda_t' has shape \[32\]"):
        from_official_state_dict(_with(sd, blocks__0__mrla__lambda_t=torch.zeros(32)), num_heads=2)
    # the official num_classes=0 (an Identity head): the features, as the official model gives them
    headless = from_official_state_dict(_with(sd, drop=("head.",)), num_heads=2).eval()
    assert headless.num_classes == 0
    full = from_official_state_dict(sd, num_heads=2).eval()
    with torch.no_grad():
        feats = headless(ref["input"])
        assert feats.shape == (2, 64)
        assert torch.equal(feats, full.forward_head(full.forward_features(ref["input"]), pre_logits=True))


def test_converter_takes_the_official_resnets_empty_classifier():
    ref = load_reference("mrla_light_resnet_w16_2222")
    sd = _with(ref["state_dict"], fc__weight=torch.zeros(0, 512), fc__bias=torch.zeros(0))  # num_classes=0
    headless, full = from_official_state_dict(sd).eval(), from_official_state_dict(ref["state_dict"]).eval()
    with torch.no_grad():
        feats = headless(ref["input"])
        assert feats.shape == (2, 512)
        assert torch.equal(feats, full.forward_head(full.forward_features(ref["input"]), pre_logits=True))
