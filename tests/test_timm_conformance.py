"""timm's own model properties, on every registered MRLA model (what timm's tests/test_models.py asks
of its models, at smaller inputs): default construction, a gradient for every parameter, FX forward
and backward, default_cfg fields, forward_features / forward_head, features_only, gradient
checkpointing and forward_intermediates (against timm's ResNet where the layouts are the same)."""
import math

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor, get_graph_node_names

import mrla_nas  # noqa: F401  (registers the models)
from mrla_nas.models import MRLAResNet

MODELS = sorted(timm.list_models("mrla_*"))
VITS = [m for m in MODELS if "deit" in m or m == "mrla_vit"]
SMALL = 64  # input side for the ImageNet-sized models (timm uses 128-384; the properties are the same)


def _create(name, **kwargs):
    """The model at a small input: a ViT's input size is fixed by its position embedding, so it is
    built for SMALL px (timm's create_model argument img_size)."""
    if name in VITS:
        kwargs.setdefault("img_size", SMALL)
    return timm.create_model(name, pretrained=False, **kwargs)


def _size(model):
    c, h, w = model.default_cfg["input_size"]
    if getattr(model, "patch_embed", None) is not None:
        return (c, *model.patch_embed.img_size)
    return (c, min(h, SMALL), min(w, SMALL))


def _fx_model(model, train=False):
    """As timm's test: trace with timm's notrace modules/functions as leaves, return the last node."""
    kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                  param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kwargs)
    train_return = [train_nodes[-1]]
    if train:
        graph = NodePathTracer(**kwargs).trace(model)
        nodes = list(reversed(graph.nodes))
        outputs = [n.name for n in nodes[0]._input_nodes.keys()]
        names = [n.name for n in nodes]
        train_return = [train_nodes[-names.index(n)] for n in outputs]
    return create_feature_extractor(model, train_return_nodes=train_return, eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=kwargs)


def test_every_mrla_name_is_covered():
    assert len(MODELS) == 17 and {"mrla_resnet", "mrla_vit", "mrla_timm"} <= set(MODELS) and len(VITS) == 7


@pytest.mark.parametrize("name", MODELS)
def test_builds_with_defaults_and_forward_is_finite(name):
    model = _create(name).eval()
    x = torch.randn(1, *_size(model))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, model.num_classes) and torch.isfinite(out).all()
        model.set_grad_checkpointing()
        assert torch.allclose(model(x), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name):
    model = _create(name, num_classes=42).train()
    out = model(torch.randn(2, *_size(model)))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == [] and out.shape[-1] == 42


@pytest.mark.parametrize("name", MODELS)
def test_fx_forward_is_exact_and_fx_backward_reaches_every_parameter(name):
    model = _create(name).eval()
    x = torch.randn(1, *_size(model))
    with torch.inference_mode():
        out = model(x)
        fx_out = torch.cat(tuple(_fx_model(model)(x).values()))
    assert torch.equal(fx_out, out)

    model = _create(name, num_classes=42).train()
    n_params = sum(p.numel() for p in model.parameters())
    fx = _fx_model(model, train=True)
    torch.cat(tuple(fx(torch.randn(2, *_size(model))).values())).mean().backward()
    assert sum(p.grad.numel() for p in fx.parameters() if p.grad is not None) == n_params


@pytest.mark.parametrize("name", VITS)
def test_vit_default_cfg_forward_features_and_head(name):
    # timm's test_model_default_cfgs_non_std, which timm routes its own ViTs to by name ('vit_*',
    # 'deit*'); the mrla_* names fall to the spatial test_model_default_cfgs instead (README)
    model = _create(name).eval()
    cfg, state = model.default_cfg, model.state_dict()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    assert cfg["classifier"] + ".weight" in state and cfg["first_conv"] + ".weight" in state
    # the registered DeiTs are 224 px; mrla_vit's configuration is that of its arch (here SMALL px)
    assert cfg["fixed_input_size"] and cfg["input_size"] == ((3, SMALL, SMALL) if name == "mrla_vit" else (3, 224, 224))
    x = torch.randn(1, *_size(model))
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, 1 + (SMALL // 16) ** 2, model.num_features)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        assert model.num_classes == 0 and model(x).shape == pre.shape
        assert _create(name, num_classes=0).eval()(x).shape == (1, model.num_features)


@pytest.mark.parametrize("name", [m for m in MODELS if m not in VITS])
def test_default_cfg_forward_features_and_head(name):
    model = timm.create_model(name, pretrained=False).eval()
    cfg = model.default_cfg
    state = model.state_dict()
    assert cfg["classifier"] + ".weight" in state and cfg["first_conv"] + ".weight" in state
    assert model.num_features > 0 and model.head_hidden_size > 0
    x = torch.randn(1, *cfg["input_size"])  # the pool size is that of the default input
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert tuple(feats.shape[-2:]) == tuple(cfg["pool_size"]) and feats.shape[1] == model.num_features
        assert pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0 and model(x).shape == pre.shape
        model.reset_classifier(0, "")
        assert model(x).shape[-2:] == feats.shape[-2:]
        headless = timm.create_model(name, pretrained=False, num_classes=0, global_pool="").eval()
        assert headless(x).ndim == 4


@pytest.mark.parametrize("name", MODELS)
def test_features_only_channels_and_strides(name):
    model = _create(name, features_only=True).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    size = (3, SMALL, SMALL)
    with torch.no_grad():
        outs = model(torch.randn(1, *size))
    assert len(outs) == len(channels) >= (3 if name in VITS else 4)
    for c, r, o in zip(channels, reductions, outs):
        assert o.shape[1] == c and o.shape[-1] <= math.ceil(size[-1] / r) + 1


@pytest.mark.parametrize("name", MODELS)
def test_forward_intermediates_as_timm_asks(name):
    model = _create(name).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    x = torch.randn(1, *_size(model))
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, output_fmt="NCHW")
        assert [t.shape[1] for t in inter] == info.channels()
        assert torch.allclose(final, model.forward_features(x))
        model.set_grad_checkpointing()
        again, _ = model.forward_intermediates(x)
        assert torch.allclose(final, again, rtol=1e-4, atol=1e-5)
    # mrla_timm is timm's own model (its ResNet asserts the format); ours say which format is asked
    error, message = (AssertionError, "NCHW") if name == "mrla_timm" else (ValueError, "output_fmt='NHWC'")
    with pytest.raises(error, match=message):
        model.forward_intermediates(x, output_fmt="NHWC")


@pytest.mark.parametrize("kwargs", [{}, {"indices": 2}, {"indices": [0, 3], "stop_early": True, "norm": True},
                                    {"indices": [1], "intermediates_only": True, "output_fmt": "NLC"},
                                    {"return_prefix_tokens": True}])
def test_vit_forward_intermediates_equal_timm_vit(kwargs):
    from mrla_nas.models import MRLAVisionTransformer
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2, num_classes=10)
    ours = MRLAVisionTransformer(mrla="none", **args).eval()
    theirs = timm.models.VisionTransformer(**args).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        a, b = ours.forward_intermediates(x, **kwargs), theirs.forward_intermediates(x, **kwargs)
    flat = lambda v: [t for item in v for t in (item if isinstance(item, tuple) else (item,))]  # noqa: E731
    if kwargs.get("intermediates_only"):
        a, b = (None, a), (None, b)
    else:
        assert torch.equal(a[0], b[0])
    assert all(torch.equal(u, v) for u, v in zip(flat(a[1]), flat(b[1]))) and len(a[1]) == len(b[1])


def _same_as_timm_resnet():
    """An MRLAResNet without MRLA has timm's resnet18 layout: same keys, same function."""
    ours = MRLAResNet("basic", (2, 2, 2, 2), (64, 128, 256, 512), mrla="none", num_classes=10).eval()
    theirs = timm.create_model("resnet18", num_classes=10).eval()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("kwargs", [{}, {"indices": 2}, {"indices": [0, 3], "stop_early": True},
                                    {"indices": [1], "intermediates_only": True}, {"norm": True}])
def test_forward_intermediates_equal_timm_resnet(kwargs):
    ours, theirs = _same_as_timm_resnet()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours.forward_intermediates(x, **kwargs), theirs.forward_intermediates(x, **kwargs)
    if kwargs.get("intermediates_only"):
        a, b = (None, a), (None, b)
    else:
        assert torch.equal(a[0], b[0])
    assert len(a[1]) == len(b[1]) and all(torch.equal(u, v) for u, v in zip(a[1], b[1]))


def test_prune_intermediate_layers_equals_timm_resnet():
    ours, theirs = _same_as_timm_resnet()
    assert ours.prune_intermediate_layers([1, 2]) == theirs.prune_intermediate_layers([1, 2])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    assert ours.num_features == theirs.num_features == 128


@pytest.mark.parametrize("form", ["light", "base"])
def test_gradient_checkpointing_recomputes_and_keeps_every_gradient(form):
    def grads(checkpointing):
        torch.manual_seed(0)
        model = MRLAResNet("basic", (2, 3), (8, 16), mrla=form, stem_type="small", num_classes=5).train()
        model.set_grad_checkpointing(checkpointing)
        calls = []
        for b in model.mrla_blocks():
            b.register_forward_pre_hook(lambda *_: calls.append(1))  # recompute may stop early
        torch.manual_seed(1)
        model(torch.randn(4, 3, 12, 12)).logsumexp(1).sum().backward()
        return {n: p.grad for n, p in model.named_parameters()}, len(calls)

    plain, n_plain = grads(False)
    ckpt, n_ckpt = grads(True)
    assert n_ckpt == 2 * n_plain == 10  # every block ran again in the backward pass
    for n, g in plain.items():
        assert torch.allclose(ckpt[n], g, rtol=1e-4, atol=1e-6), n
