"""MRLA ResNets: registration, gradients, features_only, configurations."""
import contextlib
import warnings

import pytest
import timm
import torch

from mrla_nas.layers import MRLABase, MRLALight
from mrla_nas.models import MRLAResNet, build_model


def _mrla_param_names(model):
    return [n for n, _ in model.named_parameters() if ".mrla." in n or ".bn_mrla." in n]


def _first_blocks(model):
    return {f"{name}.0." for name in model.stage_names}


@pytest.mark.parametrize("form", ["light", "base"])
@pytest.mark.parametrize("block", ["bottleneck", "basic"])
def test_gradients_reach_every_mrla_parameter(form, block):
    model = MRLAResNet(block, (2, 3), (8, 16), mrla=form, stem_type="small", stem_width=16, num_classes=5)
    model.train()
    model(torch.randn(2, 3, 16, 16)).logsumexp(1).sum().backward()
    for name in _mrla_param_names(model):
        grad = dict(model.named_parameters())[name].grad
        first_block_qk = form == "base" and any(name.startswith(p) for p in _first_blocks(model)) and ".Wq." in name
        if first_block_qk:
            # softmax over a single block: the query gets no gradient, as in the official code
            assert grad is None or not grad.any(), name
        else:
            assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", ["mrla_light_resnet20", "mrla_base_resnet20"])
@pytest.mark.parametrize("train", [True, False])
def test_batch_of_one_in_train_and_eval(name, train):
    model = timm.create_model(name, num_classes=7, in_chans=1).train(train)
    out = model(torch.randn(1, 1, 28, 28))
    assert out.shape == (1, 7) and torch.isfinite(out).all()
    if train:
        out.sum().backward()


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("name", ["mrla_light_resnet20", "mrla_base_resnet20", "mrla_light_deit_tiny_patch16_224",
                                  "mrla_base_deit_tiny_patch16_224"])
def test_an_empty_batch_changes_nothing(name, plain):
    """As timm's own models: an empty output, the running statistics as they were (the fused
    BatchNorm once made them NaN), zero gradients; on the C++ path and on the plain one."""
    from mrla_nas.layers.cpu_ops import plain_pytorch

    model = timm.create_model(name, num_classes=7, pretrained=False).train()
    side = 224 if "deit" in name else 32
    before = {n: b.clone() for n, b in model.named_buffers() if b.is_floating_point()}
    with plain_pytorch() if plain else contextlib.nullcontext():
        out = model(torch.randn(0, 3, side, side))
        out.sum().backward()
    assert out.shape == (0, 7)
    for n, b in model.named_buffers():
        if n in before:
            assert torch.equal(b, before[n]), n
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("name", ["mrla_light_resnet20", "mrla_base_resnet20", "mrla_light_deit_tiny_patch16_224",
                                  "mrla_base_deit_tiny_patch16_224"])
def test_cpu_autocast(name):
    """Under autocast the plain path runs (autocast picks its operators' dtypes; MRLA-base's C++
    attention once met bfloat16 keys beside float32 queries there and stopped)."""
    from mrla_nas.layers.cpu_ops import use_cpu_kernels

    model = timm.create_model(name, num_classes=7, pretrained=False).train()
    side = 224 if "deit" in name else 32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not use_cpu_kernels(torch.zeros(1))
        out = model(torch.randn(2, 3, side, side))
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name,size,channels,reductions", [
    ("mrla_light_resnet50", 64, [64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
    ("mrla_base_resnet50", 64, [64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
    ("mrla_light_resnet20", 32, [16, 16, 32, 64], [1, 1, 2, 4]),
])
def test_features_only_channels_and_reductions(name, size, channels, reductions):
    model = timm.create_model(name, features_only=True, pretrained=False)
    assert model.feature_info.channels() == channels
    assert model.feature_info.reduction() == reductions
    feats = model(torch.randn(1, 3, size, size))
    assert [f.shape[1] for f in feats] == channels
    assert [size // f.shape[-1] for f in feats] == reductions


def test_features_only_out_indices_keep_base_memory_working():
    full = timm.create_model("mrla_base_resnet20").eval()
    feats = timm.create_model("mrla_base_resnet20", features_only=True, out_indices=(3,)).eval()
    feats.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")}, strict=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(feats(x)[0], full.forward_features(x), atol=1e-6)


def test_forward_intermediates():
    model = timm.create_model("mrla_light_resnet20").eval()
    final, inter = model.forward_intermediates(torch.randn(1, 3, 32, 32))
    assert [t.shape[1] for t in inter] == [16, 16, 32, 64]
    assert final.shape == inter[-1].shape


def test_per_stage_forms_heads_and_reduction():
    model = MRLAResNet("bottleneck", (1, 2, 2), (16, 32, 64),
                       mrla=["none", {"form": "light", "heads": 4, "reduction": 8},
                             {"form": "base", "channel_wise": True}], stem_type="deep", num_classes=3)
    assert not hasattr(model.layer1[0], "mrla")
    assert isinstance(model.layer2[1].mrla, MRLALight) and model.layer2[1].mrla.heads == 4
    assert hasattr(model.layer2[1].mrla.qkv.Wq, "fc1") and model.layer2[1].mrla.qkv.Wq.fc1.out_features == 16
    assert isinstance(model.layer3[0].mrla, MRLABase) and model.layer3[0].mrla.heads == 256
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_default_heads_follow_the_paper():
    light = timm.create_model("mrla_light_resnet50")
    base = timm.create_model("mrla_base_resnet50")
    assert [getattr(light, f"layer{i}")[0].mrla.heads for i in range(1, 5)] == [8, 16, 32, 64]
    assert [getattr(base, f"layer{i}")[0].mrla.heads for i in range(1, 5)] == [16, 32, 64, 128]
    assert timm.create_model("mrla_light_resnet20").layer1[0].mrla.heads == 1  # 16 channels: one head


def test_official_initialisation():
    model = timm.create_model("mrla_light_resnet20")
    blk = model.layer2[1]
    assert torch.equal(blk.bn_mrla.weight, torch.ones_like(blk.bn_mrla.weight))
    assert not blk.bn2.weight.any()  # last BN of the residual branch zero-initialised
    assert blk.mrla.lambda_t.std() > 0.3  # lambda ~ N(0, 1)


def test_mrla_drop_path_rates_increase_linearly():
    model = timm.create_model("mrla_light_resnet20", mrla_drop_path_rate=0.2)
    rates = [getattr(b.mrla_drop_path, "drop_prob", 0.0) for b in model.mrla_blocks()]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)


@pytest.mark.parametrize("kwargs,match", [
    (dict(mrla={"form": "light", "heads": 3}), "heads=3"),
    (dict(mrla={"form": "light", "reduction": 5}), "reduction=5"),
    (dict(mrla="full"), "form='full'"),
    (dict(stem_type="huge"), "stem_type='huge'"),
    (dict(mrla={"form": "light", "head": 2}), "unknown keys"),
    (dict(mrla={"form": "light", "kernel_size": 4}), "kernel_size=4 must be a positive odd"),
    (dict(mrla={"form": "base", "kernel_size": 0}), "kernel_size=0"),
    (dict(mrla={"form": "light", "kernel_size": 3.0}), "kernel_size=3.0"),
    (dict(mrla={"form": "base"}, mrla_kernel_size=-1), "kernel_size=-1"),
])
def test_bad_configs_raise_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MRLAResNet("basic", (1, 1), (16, 32), **kwargs)


def test_registered_names():
    names = set(timm.list_models("mrla_*"))
    assert {"mrla_light_resnet50", "mrla_base_resnet50", "mrla_light_resnet101", "mrla_base_resnet101",
            "mrla_light_resnet20", "mrla_base_resnet20", "mrla_light_resnet56", "mrla_base_resnet56"} <= names
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("mrla_light_resnet50", pretrained=True)


def test_torchscript_is_refused_in_one_line_and_trace_export_work():
    net = build_model({"block": "basic", "layers": [1, 1], "channels": [8, 16], "stem": "small",
                       "stages": ["light", "base"], "in_chans": 1, "num_classes": 10}).eval()
    with pytest.raises(RuntimeError, match="MRLALight \\(MRLA\\) cannot be compiled by torch.jit.script"):
        torch.jit.script(net)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # the units' input checks stay out of a trace
        warnings.simplefilter("ignore", FutureWarning)  # jit.trace's own deprecation
        traced = torch.jit.trace(net, x)
        assert torch.allclose(traced(x), net(x), atol=1e-6)
    assert torch.allclose(torch.export.export(net, (x,)).module()(x), net(x), atol=1e-6)
