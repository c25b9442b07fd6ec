"""MRLA around the blocks of the user's own timm CNN (mrla_nas/models/timm_mrla.py, the timm backbone):
every family, the equivalence with our ResNet (and so with the official code), the warm start's
step-0 identity, timm's interfaces, and the bad inputs."""
import copy

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml

from conftest import load_reference, rel_err
from mrla_nas import build_model
from mrla_nas.arch import TimmConfig, arch_from_dict
from mrla_nas.arch.timm_layout import timm_layout
from mrla_nas.cli import main
from mrla_nas.errors import ConfigError
from mrla_nas.layers import MRLABase, MRLALight
from mrla_nas.models import MRLAResNet, official_to_mrla_nas_keys
from mrla_nas.models.timm_mrla import mrla_timm_model

# small members of each family the issue names: (name, in_chans, stages whose blocks all change shape)
FAMILIES = [("resnet18", 3, ()), ("convnext_atto", 1, ()), ("regnetx_002", 3, ()),
            ("efficientnet_b0", 3, (0, 6)), ("mobilenetv3_small_050", 1, (0, 5))]


def _units(net, cls):
    return [m for m in net.modules() if isinstance(m, cls)]


@pytest.mark.parametrize("name,in_chans,no_light", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_family_carries_both_forms_where_the_layout_says(name, in_chans, no_light):
    layout = timm_layout(name, in_chans)
    n = len(layout.stages)
    light = ["none" if i in no_light else "light" for i in range(n)]
    x = torch.randn(2, in_chans, 32, 32)
    for forms, cls in ((light, MRLALight), (["base"] * n, MRLABase)):
        net = mrla_timm_model(name, forms, in_chans=in_chans, num_classes=10)
        expected = sum(len(s.light_blocks()) if f == "light" else s.depth if f == "base" else 0
                       for s, f in zip(layout.stages, forms))
        assert len(_units(net, cls)) == expected > 0
        out = net(x)
        out.sum().backward()
        assert out.shape == (2, 10)
        # every MRLA parameter of a trained block gets a gradient (base's first blocks hold no Wq)
        unit = _units(net, cls)[-1]
        assert all(p.grad is not None for p in unit.parameters())


def _light_expected(block, x, o):
    """MRLA.md's MRLA-light, written out: o + BN(sigmoid(<Q_h, K_h>/sqrt(d)) * DW3x3(o)_h + lambda * o_prev)."""
    unit = block.mrla
    c, g = o.shape[1], unit.heads
    y = o.mean((2, 3)).unsqueeze(1)
    q = F.conv1d(y, unit.qkv.Wq.conv.weight, padding="same").squeeze(1)
    k = F.conv1d(y, unit.qkv.Wk.conv.weight, padding="same").squeeze(1)
    gate = torch.sigmoid((q * k).view(-1, g, c // g).sum(-1) / (c // g) ** 0.5)
    v = F.conv2d(o, unit.qkv.Wv.weight, padding=1, groups=c)
    o_prev = x if block.mrla_shortcut == "input" else block.downsample(x)
    return o + block.bn_mrla(gate.repeat_interleave(c // g, 1)[..., None, None] * v + unit.lambda_t * o_prev)


def _base_expected(block, o, stage_kv):
    """MRLA.md's MRLA-base: softmax over the stage's blocks so far of <Q_h, K_h,t>/sqrt(d), sum of V_t."""
    unit = block.mrla
    c, g = o.shape[1], unit.heads
    y = o.mean((2, 3)).unsqueeze(1)
    k = F.conv1d(y, unit.qkv.Wk.conv.weight, padding="same").squeeze(1) if unit.qkv.Wk is not None else None
    stage_kv.append((k, F.conv2d(o, unit.qkv.Wv.weight, padding=1, groups=c)))
    if len(stage_kv) == 1:
        out = stage_kv[0][1]
    else:
        q = F.conv1d(y, unit.qkv.Wq.conv.weight, padding="same").squeeze(1)
        scores = torch.stack([(q * kt).view(-1, g, c // g).sum(-1) for kt, _ in stage_kv], -1) / (c // g) ** 0.5
        a = scores.softmax(-1).repeat_interleave(c // g, 1)  # [B, C, t]
        out = sum(a[:, :, t, None, None] * vt for t, (_, vt) in enumerate(stage_kv))
    return o + torch.relu(block.bn_mrla(out))


@pytest.mark.parametrize("name,in_chans,no_light", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_wrapped_block_computes_mrla_md_equations(name, in_chans, no_light):
    """Each block's output against MRLA.md's equations written out here, from the block's input and
    its plain timm output (eval mode, BatchNorm statistics randomised)."""
    torch.manual_seed(0)
    n = len(timm_layout(name, in_chans).stages)
    forms = ["base" if i % 2 else ("none" if i in no_light else "light") for i in range(n)]
    net = mrla_timm_model(name, forms, in_chans=in_chans, num_classes=10)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2), m.weight.data.normal_(1, 0.2)
        if isinstance(m, MRLALight):
            m.lambda_t.data.normal_()
    net.eval()
    seen = []
    hooks = [b.register_forward_hook(lambda m, a, out: seen.append((m, a[0], out)))
             for b in net.modules() if hasattr(b, "mrla_form")]
    with torch.no_grad():
        net(torch.randn(2, in_chans, 32, 32))
        kv = {}
        for block, x, out in seen:
            plain = super(type(block).__mro__[1], block).forward(x)  # the timm block's own forward (past the mixin)
            if block.mrla_form == "light":
                expected = _light_expected(block, x, plain)
            else:
                expected = _base_expected(block, plain, kv.setdefault(id(block.mrla_memory), []))
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for h in hooks:
        h.remove()
    assert {b.mrla_form for b, _, _ in seen} == {"light", "base"}


def test_stages_whose_blocks_all_change_shape_refuse_light_with_one_line():
    with pytest.raises(ConfigError, match=r"stages\[0\]\.form='light': stage 1 of efficientnet_b0 \(blocks\.0\) "
                                          r"has no block whose shortcut is known"):
        arch_from_dict({"backbone": "timm", "model": "efficientnet_b0", "stages": ["light"] + ["none"] * 6})


def test_timm_resnet_wrapped_is_our_mrla_resnet_key_for_key():
    """Same keys (the mapping is the identity), same numbers, in eval and in training mode."""
    torch.manual_seed(0)
    for block, name, forms in (("basic", "resnet18", ["none", "light", "base", "light"]),
                               ("bottleneck", "resnet26", ["base", "light", "none", "base"])):
        layers = (2, 2, 2, 2)
        ours = MRLAResNet(block, layers, (64, 128, 256, 512), mrla=forms, num_classes=10)
        wrapped = mrla_timm_model(name, forms, num_classes=10)
        state = ours.state_dict()
        assert list(state) == list(wrapped.state_dict())
        for k, v in state.items():  # BatchNorm statistics that matter
            if k.endswith("running_var"):
                v.uniform_(0.5, 2)
            elif v.is_floating_point():
                v.normal_(0, 0.1)
        wrapped.load_state_dict(state)
        x = torch.randn(2, 3, 64, 64)
        for train in (False, True):
            ours.train(train), wrapped.train(train)
            assert (ours(x) - wrapped(x)).abs().max().item() <= 1e-6


@pytest.mark.parametrize("name,form", [("mrla_light_resnet_w16_2222", "light"), ("mrla_base_resnet_w16_2222", "base")])
def test_timm_resnet_wrapped_reproduces_the_official_network(name, form):
    ref = load_reference(name)
    stem = {} if form == "light" else dict(stem_type="deep", stem_width=32)
    net = mrla_timm_model("resnet50", form, num_classes=10, layers=(2, 2, 2, 2), channels=(16, 32, 64, 128),
                          **stem).eval()
    net.load_state_dict(official_to_mrla_nas_keys(ref["state_dict"]))
    with torch.no_grad():
        assert rel_err(net(ref["input"]), ref["output"]) <= 1e-5


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    plain = timm.create_model("regnetx_002", num_classes=10)
    for k, v in plain.state_dict().items():  # as a trained network would be: no zero BN scale, real stats
        if k.endswith("running_var"):
            v.uniform_(0.5, 2)
        elif v.is_floating_point():
            v.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "regnetx_002.pth"
    torch.save({"state_dict": plain.state_dict(), "epoch": 3}, path)
    return plain.eval(), path


def test_warm_start_computes_the_pretrained_network_at_step_0(plain_checkpoint):
    plain, path = plain_checkpoint
    x = torch.randn(4, 3, 32, 32)
    for forms in (["light", "base", "light", "base"], ["base"] * 4):
        arch = arch_from_dict({"backbone": "timm", "model": "regnetx_002", "num_classes": 10,
                               "pretrained": str(path), "stages": forms})
        net = build_model(arch).eval()
        with torch.no_grad():
            assert (net(x) - plain(x)).abs().max().item() <= 1e-6
        # and it learns: the scale that starts each branch at zero gets a gradient (light: BN_mrla's;
        # base: the LayerScale after its ReLU, which a zero BN scale would leave without one)
        net.train()
        torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 3])).backward()
        for b in _units_hosts(net):
            scale = b.bn_mrla.weight if b.mrla_form == "light" else b.mrla_scale.gamma
            assert scale.grad.abs().sum() > 0, b


def _units_hosts(net):
    return [m for m in net.modules() if hasattr(m, "bn_mrla")]


def test_warm_start_keeps_the_checkpoints_backbone_and_a_new_classifier(plain_checkpoint):
    plain, path = plain_checkpoint
    net = mrla_timm_model("regnetx_002", "light", num_classes=3, warm_start=str(path))
    assert torch.equal(net.stem.conv.weight, plain.stem.conv.weight)
    assert net.head.fc.out_features == 3


@pytest.mark.parametrize("make,expected", [
    (lambda p: torch.save({"stem.conv.weight": torch.zeros(1)}, p), "backbone.pretrained: the checkpoint has no"),
    (lambda p: torch.save([1, 2, 3], p), "not a state dict"),
    (lambda p: p.write_bytes(b"not a checkpoint"), "not a torch checkpoint"),
    (lambda p: torch.save({**timm.create_model("regnetx_002").state_dict(),
                           "s1.b1.conv1.conv.weight": torch.zeros(2, 2, 1, 1)}, p),
     "'s1.b1.conv1.conv.weight' is [2, 2, 1, 1] in the checkpoint but [24, 32, 1, 1] in regnetx_002"),
    (lambda p: torch.save({**timm.create_model("regnetx_002").state_dict(), "extra.weight": torch.zeros(1)}, p),
     "the checkpoint's 'extra.weight' is not in regnetx_002"),
])
def test_a_checkpoint_that_is_not_the_plain_models_is_one_line(make, expected, tmp_path):
    path = tmp_path / "ckpt.pth"
    make(path)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        mrla_timm_model("regnetx_002", "light", warm_start=str(path))


def test_base_under_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    net = mrla_timm_model("convnext_atto", ["base", "light", "base", "base"], in_chans=1, num_classes=10)
    x = torch.randn(2, 1, 32, 32)
    grads = []
    for checkpointing in (False, True):
        net.zero_grad()
        net.set_grad_checkpointing(checkpointing)
        net(x).sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_timms_interfaces_of_the_wrapped_model():
    net = mrla_timm_model("resnet18", ["light", "base", "base", "light"], num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    final, inter = net.forward_intermediates(x)
    assert [t.shape[1] for t in inter] == [64, 64, 128, 256, 512]
    with torch.no_grad():
        torch.testing.assert_close(net.forward_head(final), net(x))
    # timm's FX feature extraction keeps the wrapped blocks whole (leaves) and gives the same features
    from timm.models import create_feature_extractor
    from timm.models._features import FeatureGetterNet
    fx = create_feature_extractor(net, {"layer3": "l3"})
    torch.testing.assert_close(fx(x)["l3"], inter[3])
    # a deep copy (EMA) shares no MRLA-base memory with the original
    twin = copy.deepcopy(net)
    assert twin.layer2[0].mrla_memory is not net.layer2[0].mrla_memory
    assert twin.layer2[1].mrla_memory is twin.layer2[0].mrla_memory
    assert isinstance(FeatureGetterNet(net, out_indices=(1, 2)), torch.nn.Module)


def test_compile_matches_eager_in_eval_and_in_every_gradient():
    """As tests/test_compile.py checks our own networks: float64, so a wrong graph shows as O(1)."""
    from test_compile import assert_compiled_matches_eager

    torch.manual_seed(0)
    net = mrla_timm_model("resnet18", ["light", "base", "light", "base"], num_classes=5).double()
    assert_compiled_matches_eager(net, torch.randn(2, 3, 32, 32, dtype=torch.float64), "aot_eager")


def test_a_config_round_trips_and_rebuilds_the_same_network(tmp_path):
    arch = TimmConfig.from_dict({"backbone": "timm", "model": "convnext_atto", "in_chans": 1, "num_classes": 10,
                                 "stages": ["light", "none", {"form": "base", "heads": 5}, "none"]})
    assert arch.canonical().stages[2].heads == 5
    path = tmp_path / "arch.yaml"
    path.write_text(arch.to_yaml())
    torch.manual_seed(0)
    a = build_model(arch)
    torch.manual_seed(0)
    b = timm.create_model("mrla_timm", **arch.model_kwargs())
    assert [k for k in a.state_dict()] == [k for k in b.state_dict()]
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert build_model(str(path)).mrla_stage_specs[2]["heads"] == 5


@pytest.mark.parametrize("backbone,expected", [
    ({"model": "vit_tiny_patch16_224"}, "backbone.model='vit_tiny_patch16_224': a vision transformer; MRLA in ViTs "
                                        "is the vit backbone"),
    ({"model": "convnext_atoo"}, "backbone.model='convnext_atoo': not a timm model name (did you mean "
                                 "'convnext_atto'?)"),
    ({"model": 3}, "backbone.model=3: expected a timm model name"),
    ({"model": "mrla_light_resnet20"}, "already an mrla-nas network"),
    ({"model": "convnext_atto", "pretrained": "/nonexistent.pth"}, "backbone.pretrained='/nonexistent.pth': no such file"),
])
def test_bad_timm_backbones_are_one_line_exit_2(backbone, expected, tmp_path, capsys):
    space = {"name": "t", "backbone": {"type": "timm", "in_chans": 1, "num_classes": 10, **backbone},
             "proxy": {"path": "/usr/share/datasets/fashion-mnist", "resolution": 32}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main(["space", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expected in err, err


def test_a_stage_index_beyond_the_models_is_one_line(tmp_path, capsys):
    space = {"name": "t", "backbone": {"type": "timm", "model": "convnext_atto", "in_chans": 1, "num_classes": 10},
             "stages": [{"form": ["none"]}] * 5, "proxy": {"resolution": 32}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main(["space", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "expected one entry per stage (4)" in err, err


@pytest.mark.slow
@pytest.mark.ray
def test_the_convnext_space_searches_end_to_end_from_a_plain_checkpoint(tmp_path, capsys):
    """The shipped fmnist_convnext.yaml, warm-started: the manifest records the checkpoint's sha256,
    the front, explain, export, build and train work unchanged, the export rebuilds the same network,
    and a resume after the checkpoint changed is one line, exit 2, the run untouched."""
    import hashlib
    import json
    from pathlib import Path

    from conftest import DATA
    from mrla_nas.cost.flops import count_params

    torch.manual_seed(0)
    plain = timm.create_model("convnext_atto", in_chans=1, num_classes=10)
    ckpt = tmp_path / "convnext_atto_fmnist.pth"
    torch.save(plain.state_dict(), ckpt)
    space = yaml.safe_load((Path(__file__).parent.parent / "search_spaces" / "fmnist_convnext.yaml").read_text())
    space["backbone"]["pretrained"] = str(ckpt)
    space["proxy"].update(path=str(DATA / "fmnist_slice"), train_size=256, val_size=128, epochs=1)
    space["search"]["trials"] = 4
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    runs = tmp_path / "runs"
    assert main(["search", str(path), "--runs-dir", str(runs), "--name", "cx"]) == 0
    run = runs / "cx"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["pretrained"] == {str(ckpt): hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    trials = __import__("pandas").read_csv(run / "trials.csv")
    assert len(trials) == 4 and set(trials["status"]) == {"complete"}
    assert main(["pareto", str(run)]) == 0 and main(["explain", str(run)]) == 0
    out = tmp_path / "best.yaml"
    assert main(["export", str(run), "--knee", "-o", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["arch"]["backbone"] == "timm" and doc["arch"]["pretrained"] == str(ckpt)
    assert count_params(build_model(str(out))) == doc["metrics"]["params"]
    assert main(["build", str(out)]) == 0
    assert main(["train", str(out), "--epochs", "1", "--train-size", "128", "--out", str(tmp_path / "trained")]) == 0
    assert (tmp_path / "trained" / "model.pt").exists()
    capsys.readouterr()

    torch.save({k: v + 1 for k, v in plain.state_dict().items()}, ckpt)  # the checkpoint is replaced
    before = (run / "study.journal").read_bytes()
    assert main(["search", str(path), "--runs-dir", str(runs), "--name", "cx", "--resume", "--trials", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the checkpoint changed since this run's trials started from it" in err
    assert (run / "study.journal").read_bytes() == before


def test_our_resnet_warm_starts_the_same_way_and_keeps_its_keys(tmp_path):
    """``pretrained`` is the same rule on the resnet backbone; a config without it keeps the key it
    always had (the shipped tables' keys, resumed runs)."""
    plain_arch = arch_from_dict({"block": "basic", "layers": [2, 2, 2], "channels": [16, 32, 64], "stem": "small",
                                 "in_chans": 1, "num_classes": 10})
    assert "pretrained" not in plain_arch.to_dict()
    torch.manual_seed(0)
    plain = build_model(plain_arch)
    for k, v in plain.state_dict().items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 2)
        elif v.is_floating_point():
            v.normal_(0, 0.1)
    path = tmp_path / "plain.pt"
    torch.save(plain.state_dict(), path)
    x = torch.randn(3, 1, 28, 28)
    for forms in (["light", "base", "light"], ["base", "base", "light"]):
        arch = arch_from_dict(dict(plain_arch.to_dict(), pretrained=str(path), stages=forms))
        assert arch.key() != arch_from_dict(dict(plain_arch.to_dict(), stages=forms)).key()
        net = build_model(arch).eval()
        with torch.no_grad():
            assert (net(x) - plain.eval()(x)).abs().max().item() <= 1e-6
    wrong = arch_from_dict(dict(plain_arch.to_dict(), channels=[16, 32, 48], pretrained=str(path)))
    with pytest.raises(ConfigError, match=r"'layer3.0.conv1.weight' is \[64, 32, 3, 3\] in the checkpoint but "
                                          r"\[48, 32, 3, 3\] in this ResNet"):
        build_model(wrong)


def test_train_hold_out_leaves_out_exactly_the_proxys_validation_images():
    from mrla_nas.training.data import stratified_split
    from mrla_nas.training.full import DEFAULTS, _training_indices

    class Split:
        labels = torch.arange(600) % 10

    kept = _training_indices(Split, dict(DEFAULTS, hold_out=100, seed=0))
    _, proxy_val = stratified_split(Split.labels, 300, 100, 0)  # a space with seed 0: val carved first
    assert len(kept) == 500 and not set(kept) & set(proxy_val)
    assert list(_training_indices(Split, dict(DEFAULTS, train_size=50, seed=0))) == list(
        stratified_split(Split.labels, 50, 0, 0)[0])  # without --hold-out: the subset as before


def test_space_init_for_a_timm_cnn_writes_a_space_that_validates(tmp_path, capsys):
    path = tmp_path / "effnet.yaml"
    assert main(["space", "init", "efficientnet_b0", "-o", str(path)]) == 0
    space = yaml.safe_load(path.read_text())
    assert space["backbone"]["type"] == "timm" and space["backbone"]["model"] == "efficientnet_b0"
    forms = [s["form"] for s in space["stages"]]
    assert forms[0] == forms[6] == ["none", "base"] and forms[1] == ["none", "light", "base"]
    assert main(["space", str(path)]) == 0
    path = tmp_path / "convnext.yaml"
    assert main(["space", "init", "convnext_atto", "-o", str(path)]) == 0
    assert yaml.safe_load(path.read_text())["proxy"]["resolution"] == 32  # 28 px is too small for it
    assert main(["space", "init", "vit_tiny_patch16_224"]) == 2
    assert "a vision transformer; MRLA in ViTs is the vit backbone" in capsys.readouterr().err


def test_a_resolution_the_model_cannot_take_is_one_line(tmp_path, capsys):
    space = {"name": "t", "backbone": {"type": "timm", "model": "convnext_atto", "in_chans": 1, "num_classes": 10},
             "proxy": {"resolution": 28}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main(["space", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "proxy.resolution=28: convnext_atto cannot take 28 px images" in err, err
