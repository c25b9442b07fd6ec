"""MRLA units: head rules, the Q/K projection variants, and the copy-free MRLA-base memory."""
import numpy as np
import pytest
import torch

from mrla_nas import ArchConfig
from mrla_nas.layers import MRLABase, MRLALight, eca_kernel_size, resolve_heads
from mrla_nas.models import MRLAResNet
from mrla_nas.arch.paper_defaults import paper_heads
from mrla_nas.layers.mrla_base import _WeightedLayerSum


def test_eca_rule():
    assert [eca_kernel_size(c) for c in (64, 256, 512, 1024, 2048)] == [3, 5, 5, 5, 7]


def test_heads_as_count_channels_per_head_or_channel_wise():
    assert resolve_heads(64, heads=2) == 2
    assert resolve_heads(64, dim_per_head=16) == 4
    assert resolve_heads(64, channel_wise=True) == 64
    assert MRLALight(256).heads == 8 and MRLABase(256).heads == 16  # paper defaults d=32 / d=16
    for bad in (dict(heads=3), dict(dim_per_head=24), dict(heads=0), dict(heads=True), dict(heads=2.0)):
        with pytest.raises(ValueError, match="divisor of channels=64"):
            resolve_heads(64, **bad)
    assert type(resolve_heads(64, heads=np.int64(4))) is int  # a numpy count is a count (C++ ops take int)


@pytest.mark.parametrize("form,width,heads", [
    # the official code's int(C / d) heads (d = 32 light, 16 base), also where d does not divide C
    ("light", 256, 8), ("light", 80, 2), ("light", 48, 1), ("light", 96, 3), ("light", 40, 1),
    ("base", 256, 16), ("base", 40, 2), ("base", 24, 1), ("base", 48, 3),
    # below d the official code builds no head (int(16 / 32) = 0): gcd(C, d) channels per head
    ("light", 16, 1), ("light", 24, 3), ("base", 8, 1),
    # nor where int(C / d) does not divide C (100 / 3): gcd again
    ("light", 100, 25)])
def test_paper_heads_are_the_official_codes(form, width, heads):
    assert paper_heads(form, width) == heads
    assert (MRLALight if form == "light" else MRLABase)(width).heads == heads


@pytest.mark.parametrize("width", [8, 16, 24, 48, 64, 96, 256, 2048])
@pytest.mark.parametrize("form,unit_cls", [("light", MRLALight), ("base", MRLABase)])
def test_one_head_rule_for_units_models_and_configs(form, unit_cls, width):
    # the units, the networks and the configs all take their default heads from mrla_nas.paper
    expected = paper_heads(form, width)
    assert unit_cls(width).heads == expected
    net = MRLAResNet("basic", (1,), (width,), mrla=form, stem_type="small", num_classes=2)
    assert net.layer1[0].mrla.heads == expected
    arch = ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [width], "stem": "small",
                                 "stages": [form]})
    assert arch.canonical().stages[0].heads == expected


def test_base_first_block_holds_only_what_it_uses():
    net = MRLAResNet("basic", (3, 1), (16, 32), mrla="base", stem_type="small", num_classes=2)
    first, later, alone = net.layer1[0].mrla.qkv, net.layer1[1].mrla.qkv, net.layer2[0].mrla.qkv
    assert first.Wq is None and first.Wk is not None  # its key is read by the blocks after it
    assert later.Wq is not None and later.Wk is not None
    assert alone.Wq is None and alone.Wk is None      # a stage of one block: nobody reads its key


@pytest.mark.parametrize("unit_cls", [MRLALight, MRLABase])
def test_reduction_ratio_projection(unit_cls):
    unit = unit_cls(64, heads=4, reduction=4)
    assert unit.qkv.Wq.fc1.weight.shape == (16, 64) and unit.qkv.Wk.fc2.weight.shape == (64, 16)
    with pytest.raises(ValueError, match="reduction=6"):
        unit_cls(64, reduction=6)


def _naive_light(unit, x, o_prev):
    # the paper's equation written plainly: conv, per-head sigmoid gate, multiply, add
    b, c, h, w = x.shape
    g = unit.heads
    q, k = unit.qkv.query_key(x)
    s = torch.sigmoid((q.view(b, g, -1) * k.view(b, g, -1)).sum(-1) / (c // g) ** 0.5)
    v = unit.qkv.Wv(x).view(b, g, c // g, h, w)
    return (v * s.view(b, g, 1, 1, 1)).view(b, c, h, w) + unit.lambda_t * o_prev


def _naive_base(units, xs):
    # the official formulation: concatenate K and V at every block, softmax, weighted sum
    K = V = None
    outs = []
    for unit, x in zip(units, xs):
        b, c, h, w = x.shape
        g = unit.heads
        q, k = unit.qkv.query_key(x)
        v = unit.qkv.Wv(x)
        K = k.unsqueeze(1) if K is None else torch.cat([K, k.unsqueeze(1)], 1)
        V = v.unsqueeze(1) if V is None else torch.cat([V, v.unsqueeze(1)], 1)
        t = K.shape[1]
        a = torch.einsum("bgd,btgd->bgt", q.view(b, g, -1), K.view(b, t, g, -1)) / (c // g) ** 0.5
        a = a.softmax(-1)
        outs.append(torch.einsum("bgt,btgx->bgx", a, V.view(b, t, g, -1)).reshape(b, c, h, w))
    return outs


def test_light_forward_and_gradients_equal_the_plain_formulation():
    unit = MRLALight(32, heads=4).double()
    x = torch.randn(3, 32, 6, 6, dtype=torch.double, requires_grad=True)
    o = torch.randn(3, 32, 6, 6, dtype=torch.double, requires_grad=True)
    fast = unit(x, o)
    grads_fast = torch.autograd.grad(fast.square().sum(), [x, o, *unit.parameters()])
    slow = _naive_light(unit, x, o)
    grads_slow = torch.autograd.grad(slow.square().sum(), [x, o, *unit.parameters()])
    assert torch.allclose(fast, slow)
    for a, b in zip(grads_fast, grads_slow):
        assert torch.allclose(a, b)


def test_base_forward_and_gradients_equal_the_concatenating_formulation():
    units = [MRLABase(32, heads=4).double() for _ in range(4)]
    xs = [torch.randn(2, 32, 5, 5, dtype=torch.double, requires_grad=True) for _ in range(4)]
    params = [p for u in units for p in u.parameters()]
    memory, fast = None, []
    for u, x in zip(units, xs):
        out, memory = u(x, memory)
        fast.append(out)
    slow = _naive_base(units, xs)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b)
    loss_fast = sum((o * torch.linspace(0, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in fast)
    loss_slow = sum((o * torch.linspace(0, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in slow)
    gf = torch.autograd.grad(loss_fast, xs + params, allow_unused=True)
    gs = torch.autograd.grad(loss_slow, xs + params, allow_unused=True)
    for a, b in zip(gf, gs):
        a = torch.zeros_like(b) if a is None else a  # first block's Wq: no gradient at all vs zero
        assert torch.allclose(a, b)


def test_weighted_layer_sum_gradcheck():
    w = torch.rand(2, 3, 3, dtype=torch.double, requires_grad=True)
    values = [torch.randn(2, 3, 4, 4, dtype=torch.double, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(_WeightedLayerSum.apply, (w, *values))


def test_base_memory_never_copies_values():
    unit = MRLABase(16, heads=2)
    x = torch.randn(1, 16, 4, 4)
    _, m1 = unit(x)
    _, m2 = unit(x, m1)
    assert m2.values[0] is m1.values[0]  # the earlier value is shared, not concatenated


def test_inputs_a_unit_cannot_take_are_one_clear_error():
    from mrla_nas.layers import TokenMRLABase, TokenMRLALight
    light, base = MRLALight(64, heads=2), MRLABase(64, heads=2)
    x = torch.randn(2, 64, 8, 8)
    cases = [
        (lambda: light(torch.randn(2, 32, 8, 8), torch.randn(2, 32, 8, 8)), r"x has shape \[2, 32, 8, 8\].*C=64"),
        (lambda: light(torch.randn(64, 8, 8), torch.randn(64, 8, 8)), r"x has shape \[64, 8, 8\]; expected \[B, C, H, W\]"),
        (lambda: light(x, torch.randn(2, 64, 4, 4)), r"o_prev has shape \[2, 64, 4, 4\]; expected x's"),
        (lambda: light(x.long(), x.long()), "dtype torch.int64; expected a floating-point"),
        (lambda: light(x.numpy(), x), "x is a ndarray"),
        (lambda: base(torch.randn(2, 32, 8, 8)), r"x has shape \[2, 32, 8, 8\]"),
        (lambda: base(torch.randn(2, 64, 4, 4), base(x)[1]), r"memory holds a value of shape \[2, 64, 8, 8\]"),
        (lambda: base(torch.randn(3, 64, 8, 8), base(x)[1]), "another stage or batch"),
        (lambda: base(x, ([], [])), "expected the LayerMemory"),
        (lambda: TokenMRLALight(64, heads=2)(torch.randn(2, 17, 32), torch.randn(2, 17, 32)), r"\[B, N, C\] with C=64"),
        (lambda: TokenMRLALight(64, heads=2)(torch.randn(17, 64), torch.randn(17, 64)), r"x has shape \[17, 64\]"),
        (lambda: TokenMRLABase(64, heads=2)(torch.randn(2, 1, 64)), "no patch tokens"),
        (lambda: MRLALight(0), "channels=0 must be a positive integer"),
        (lambda: MRLABase(64.0), "channels=64.0 must be a positive integer"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert light(x, x).shape == x.shape and base(x, base(x)[1])[0].shape == x.shape  # what they take still works
