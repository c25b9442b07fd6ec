"""The C++ CPU kernels (fused MRLA-light branch, depthwise 3x3, MRLA-base's weighted sum) compute
what the plain PyTorch path computes: forward, every gradient, BatchNorm's running statistics."""
import copy

import pytest
import timm
import torch
from torch import nn

from mrla_nas.kernels import cpu_kernels
from mrla_nas.layers.cpu_ops import depthwise3x3, fused_branch_available, plain_pytorch, use_cpu_kernels
from mrla_nas.layers.mrla_base import weighted_layer_sum
from mrla_nas.models.blocks import MRLABasicBlock, MRLABottleneck


def test_the_kernel_builds():
    assert cpu_kernels() is not None  # a compiler and ninja are part of the supported set-up


def _perturbed(block):
    """Parameters and BN_mrla's running statistics away from their initial values, so that no
    gradient or eval-mode path is trivially zero or one."""
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
        block.bn_mrla.running_mean.normal_()
        block.bn_mrla.running_var.uniform_(0.5, 2.0)
    return block


def _pair(block, cin, planes, dtype, momentum=0.1):
    m = _perturbed(block(cin, planes, mrla_form="light").to(dtype))
    m.bn_mrla.momentum = momentum
    return m, copy.deepcopy(m)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("block,shape", [(MRLABottleneck, (3, 64, 9, 7)), (MRLABasicBlock, (2, 16, 5, 1)),
                                         (MRLABasicBlock, (2, 16, 1, 4)), (MRLABasicBlock, (1, 16, 8, 8))])
def test_fused_equals_plain_forward_backward_and_running_stats(block, shape, train, dtype, tol):
    torch.manual_seed(0)
    fused, plain = _pair(block, shape[1], 16, dtype)
    fused.train(train)
    plain.train(train)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    assert fused_branch_available(x, fused.bn_mrla, fused.mrla_drop_path)
    y = fused(x)
    g = torch.randn_like(y)
    y.backward(g)
    with plain_pytorch():
        y2 = plain(x2)
        y2.backward(g)
    assert _rel(y, y2) < tol
    assert _rel(x.grad, x2.grad) < tol
    for (name, p), (_, p2) in zip(fused.named_parameters(), plain.named_parameters()):
        assert (p.grad is None) == (p2.grad is None), name
        if p.grad is not None:
            assert _rel(p.grad, p2.grad) < tol * 10, name  # summed over the batch: a few more roundings
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert _rel(getattr(fused.bn_mrla, name).double(), getattr(plain.bn_mrla, name).double()) < tol, name


def test_cumulative_average_batchnorm_momentum_none():
    torch.manual_seed(0)
    fused, plain = _pair(MRLABasicBlock, 16, 16, torch.float64, momentum=None)
    for _ in range(3):
        x = torch.randn(2, 16, 6, 6, dtype=torch.float64)
        fused(x)
        with plain_pytorch():
            plain(x)
    assert _rel(fused.bn_mrla.running_var, plain.bn_mrla.running_var) < 1e-12


def test_gradcheck_of_the_fused_block():
    torch.manual_seed(0)
    fused, _ = _pair(MRLABasicBlock, 8, 8, torch.float64)
    fused.bn_mrla.train()
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fused(t), (x,), eps=1e-6, atol=1e-6)


def test_plain_path_where_the_kernel_does_not_apply():
    block, _ = _pair(MRLABasicBlock, 16, 16, torch.float32)
    x = torch.randn(2, 16, 4, 4)
    assert not fused_branch_available(x.half(), block.bn_mrla, block.mrla_drop_path)
    assert not fused_branch_available(x, nn.SyncBatchNorm(16), block.mrla_drop_path)
    dropping = timm.layers.DropPath(0.2).train()
    assert not fused_branch_available(x, block.bn_mrla, dropping)
    assert fused_branch_available(x, block.bn_mrla, dropping.eval())


@pytest.mark.parametrize("name", ["mrla_light_resnet20", "mrla_base_resnet20"])
def test_whole_network_kernels_equal_plain(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).train()
    plain = copy.deepcopy(model)
    x = torch.randn(4, 3, 32, 32)
    y = model(x)
    w = torch.randn_like(y)  # not y.sum(): its gradients cancel to rounding noise after the last BN
    (y * w).sum().backward()
    with plain_pytorch():
        y2 = plain(x)
        (y2 * w).sum().backward()
    assert _rel(y, y2) < 1e-5
    for name, p in model.named_parameters():
        ref = dict(plain.named_parameters())[name].grad
        assert (p.grad is None) == (ref is None), name  # Wq/Wk of a base stage's first block get none
        if ref is None:
            continue
        # float32 through the whole network in another summation order: relative to the tensor's
        # scale; + 1e-6 because a stage's last bn_mrla.bias has a zero gradient (the next stage's BNs
        # remove a constant shift), so both values are rounding noise
        assert (p.grad - ref).abs().max() <= 1e-5 * ref.abs().max() + 1e-6, name


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("MRLA_NAS_FUSED", "0")
    assert cpu_kernels.__wrapped__() is None


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 1, 5), (2, 2, 6, 1), (1, 1, 1, 1), (2, 4, 16, 16)])
def test_depthwise3x3_equals_conv2d(shape):
    torch.manual_seed(0)
    b, c, h, w = shape
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    k = torch.randn(b * c, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    y = depthwise3x3(x, k)
    ref = torch.nn.functional.conv2d(x.reshape(1, b * c, h, w), k, padding=1, groups=b * c).view(shape)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    gx, gk = torch.autograd.grad(y, (x, k), g)
    rx, rk = torch.autograd.grad(ref, (x, k), g)
    torch.testing.assert_close(gx, rx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gk, rk, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [1, 2, 5])
def test_weighted_layer_sum_kernel_equals_plain_and_gradchecks(t):
    torch.manual_seed(0)
    w = torch.rand(2, 3, t, dtype=torch.float64, requires_grad=True)
    values = [torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True) for _ in range(t)]
    assert use_cpu_kernels(values[0])
    out = weighted_layer_sum(w, values)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [w, *values], g)
    with plain_pytorch():
        assert not use_cpu_kernels(values[0])
        ref = weighted_layer_sum(w, values)
        ref_grads = torch.autograd.grad(ref, [w, *values], g)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda w_, *v: weighted_layer_sum(w_, list(v)), (w, *values))


def _base_stage(dtype):
    return nn.ModuleList([_perturbed(MRLABasicBlock(16, 16, mrla_form="base").to(dtype)) for _ in range(3)])


def _run_stage(blocks, x):
    memory = None
    for blk in blocks:
        x, memory = blk(x, memory)
    return x


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(3, 16, 6, 5), (2, 16, 1, 3)])
def test_fused_base_stage_equals_plain(shape, train, dtype, tol):
    torch.manual_seed(0)
    fused = _base_stage(dtype).train(train)
    plain = copy.deepcopy(fused)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    assert fused_branch_available(x, fused[0].bn_mrla, fused[0].mrla_drop_path)
    y = _run_stage(fused, x)
    g = torch.randn_like(y)
    y.backward(g)
    with plain_pytorch():
        y2 = _run_stage(plain, x2)
        y2.backward(g)
    assert _rel(y, y2) < tol
    assert _rel(x.grad, x2.grad) < tol
    for (name, p), (_, p2) in zip(fused.named_parameters(), plain.named_parameters()):
        assert (p.grad is None) == (p2.grad is None), name
        if p2.grad is not None:
            assert (p.grad - p2.grad).abs().max() <= tol * 10 * p2.grad.abs().max() + tol, name
    for blk, blk2 in zip(fused, plain):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert _rel(getattr(blk.bn_mrla, name).double(), getattr(blk2.bn_mrla, name).double()) < tol, name


def test_gradcheck_of_a_fused_base_stage():
    torch.manual_seed(0)
    blocks = _base_stage(torch.float64).train()
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _run_stage(blocks, t), (x,), eps=1e-6, atol=1e-6)


def test_a_failed_build_warns_and_falls_back(monkeypatch):
    from torch.utils import cpp_extension

    def no_compiler(**kwargs):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    with pytest.warns(RuntimeWarning, match="c\\+\\+: command not found.*PyTorch path"):
        assert cpu_kernels.__wrapped__() is None


def _downsample(cin, cout, stride, dtype):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)).to(dtype)


# Plane sizes around the kernels' 16-lane loops (15, 16, 17 elements, one element, one row, one
# column longer than 16), a batch of one, strided blocks with a downsampled shortcut, and the
# projection variants (SE-style reduction, channel-wise heads, explicit head counts).
ODD_CASES = [
    # form, block, in channels, planes, stride, input shape, MRLA options
    ("light", MRLABasicBlock, 16, 16, 1, (2, 16, 3, 5), {}),
    ("light", MRLABasicBlock, 16, 16, 1, (2, 16, 4, 4), {"mrla_heads": 4}),
    ("light", MRLABasicBlock, 16, 16, 1, (2, 16, 17, 1), {"mrla_channel_wise": True}),
    ("light", MRLABasicBlock, 16, 16, 1, (1, 16, 1, 19), {"mrla_reduction": 4}),
    ("light", MRLABasicBlock, 8, 16, 2, (3, 8, 9, 7), {}),
    ("light", MRLABottleneck, 32, 8, 2, (2, 32, 7, 5), {"mrla_heads": 2}),
    ("base", MRLABasicBlock, 16, 16, 1, (2, 16, 3, 5), {}),
    ("base", MRLABasicBlock, 16, 16, 1, (1, 16, 1, 17), {"mrla_reduction": 2}),
    ("base", MRLABasicBlock, 16, 16, 1, (2, 16, 16, 1), {"mrla_channel_wise": True}),
    ("base", MRLABottleneck, 32, 8, 1, (2, 32, 5, 7), {"mrla_heads": 4}),
]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("form,block,cin,planes,stride,shape,options", ODD_CASES)
def test_fused_equals_plain_in_float64_on_odd_shapes(form, block, cin, planes, stride, shape, options, train,
                                                    monkeypatch):
    """Every gradient (input and parameters) and the running statistics to 1e-12 in float64."""
    from mrla_nas.models import blocks as block_module

    calls = []
    name = f"fused_{form}_branch"
    real = getattr(block_module, name)
    monkeypatch.setattr(block_module, name, lambda *a: calls.append(1) or real(*a))
    from mrla_nas.layers import mrla_light
    gates, real_gate = [], mrla_light.light_gate_kernels
    monkeypatch.setattr(mrla_light, "light_gate_kernels", lambda *a: gates.append(1) or real_gate(*a))
    torch.manual_seed(0)
    out = planes * block.expansion

    def make(first):
        down = _downsample(cin if first else out, out, stride if first else 1, torch.float64) \
            if first and (stride != 1 or cin != out) else None
        return _perturbed(block(cin if first else out, planes, stride=stride if first else 1, downsample=down,
                                mrla_form=form, **options).to(torch.float64))

    # base: a stage of two blocks, so that attention over more than one layer is exercised
    fused = nn.ModuleList([make(True)] + ([make(False)] if form == "base" else [])).train(train)
    if form == "base":
        fused[0].mrla.as_first_block()
    plain = copy.deepcopy(fused)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()

    def run(blocks, t):
        if form == "light":
            return blocks[0](t)
        return _run_stage(blocks, t)

    y = run(fused, x)
    assert len(calls) == len(fused)  # the C++ branch ran in every block
    # and the C++ gate, where the projection is the paper's Conv1d
    assert len(gates) == (form == "light" and "mrla_reduction" not in options)
    g = torch.randn_like(y)
    y.backward(g)
    with plain_pytorch():
        y2 = run(plain, x2)
        y2.backward(g)
    assert len(calls) == len(fused)
    torch.testing.assert_close(y, y2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)
    grads = 0
    for (name, p), (_, p2) in zip(fused.named_parameters(), plain.named_parameters()):
        assert (p.grad is None) == (p2.grad is None), name
        if p2.grad is not None:
            grads += 1
            torch.testing.assert_close(p.grad, p2.grad, rtol=1e-11, atol=1e-12 * max(1.0, p2.grad.abs().max().item()),
                                       msg=name)
    assert grads == sum(1 for p in plain.parameters() if p.grad is not None) > 0
    for blk, blk2 in zip(fused, plain):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(blk.bn_mrla, name), getattr(blk2.bn_mrla, name), rtol=1e-12,
                                       atol=1e-12, msg=name)


@pytest.mark.parametrize("form", ["light", "base"])
def test_fused_branch_numbers_do_not_depend_on_the_thread_count(form):
    """Planes are split between threads, and each plane is summed by one thread in one order: the
    float32 results, which the recorded tables depend on, are bit for bit those of one thread."""
    from mrla_nas.layers.fused_base import fused_base_branch
    from mrla_nas.layers.fused_light import fused_light_branch

    torch.manual_seed(0)
    b, c, h, w = 4, 32, 9, 11
    o = torch.randn(b, c, h, w)
    extra = [torch.randn(b, c, h, w) for _ in range(3)]
    kernel, lam = torch.randn(b * c, 9), torch.randn(c)
    weights = torch.rand(b, c, 3).softmax(-1)
    g = torch.randn(b, c, h, w)

    def run(threads):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            bn = nn.BatchNorm2d(c).train()
            leaves = [t.clone().requires_grad_() for t in (o, extra[0], kernel, lam, weights, *extra)]
            if form == "light":
                out = fused_light_branch(leaves[0], leaves[1], leaves[2], leaves[3], bn)
            else:
                out = fused_base_branch(leaves[0], leaves[4], leaves[5:], bn)
            out.backward(g)
            return [out, bn.running_mean, bn.running_var, bn.weight.grad, bn.bias.grad] + \
                [t.grad for t in leaves if t.grad is not None]
        finally:
            torch.set_num_threads(previous)

    one, two = run(1), run(2)
    assert len(one) == len(two) > 5
    for a, b_ in zip(one, two):
        assert torch.equal(a, b_)


# channels, heads (None: channel-wise), batch, plane side, Conv1d kernel (None: the ECA rule)
# 512 channels in one head: 512 products per score, where ATen's bmm leaves its own loop for gemm
GATE_CASES = [(16, 1, 1, 1, None), (32, 2, 3, 7, None), (64, 2, 64, 5, 5), (48, 3, 2, 3, 7), (16, None, 2, 4, 1),
              (24, 4, 5, 2, 3), (512, 1, 2, 2, None), (399, 1, 2, 1, 3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels,heads,batch,side,k", GATE_CASES)
def test_the_cpp_light_gate_is_bit_for_bit_the_aten_gate(channels, heads, batch, side, k, dtype):
    """The gated kernels and every gradient equal the ATen operators' (the path the shipped tables
    were trained on) bit for bit, in float32 too: the C++ op calls the same rounding operators."""
    from mrla_nas.layers import MRLALight

    torch.manual_seed(0)
    unit = MRLALight(channels, heads=heads, kernel_size=k, channel_wise=heads is None).to(dtype)
    with torch.no_grad():
        unit.qkv.Wq.conv.weight.normal_()
        unit.qkv.Wk.conv.weight.normal_()
    x = torch.randn(batch, channels, side, side, dtype=dtype, requires_grad=True)
    g = torch.randn(batch * channels, 9, dtype=dtype)
    results = []
    for cpp in (True, False):
        unit.zero_grad()
        x.grad = None
        kernels = unit.gated_kernels(x) if cpp else \
            unit.qkv.value_kernels(batch, unit.gate(x)).reshape(batch * channels, -1)
        assert (type(kernels.grad_fn).__name__ == "_LightGateBackward") == cpp
        (kernels * g).sum().backward()
        qkv = unit.qkv
        results.append([kernels.detach(), x.grad, qkv.Wq.conv.weight.grad, qkv.Wk.conv.weight.grad, qkv.Wv.weight.grad])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_gradcheck_of_the_cpp_light_gate():
    from mrla_nas.layers.fused_gate import light_gate_kernels

    torch.manual_seed(0)
    args = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in ((3, 12), (1, 1, 5), (1, 1, 5),
                                                                                 (12, 1, 3, 3))]
    assert torch.autograd.gradcheck(lambda *a: light_gate_kernels(*a, 3, 0.5), args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels,heads,batch,side,blocks", [(16, 1, 2, 5, 2), (32, 2, 3, 1, 4), (16, None, 2, 3, 3),
                                                              (48, 3, 16, 4, 3), (200, 1, 2, 2, 2), (199, 1, 2, 2, 2),
                                                              (128, 1, 2, 1, 4)])
def test_the_cpp_base_attention_is_bit_for_bit_the_aten_attention(channels, heads, batch, side, blocks, dtype,
                                                                  monkeypatch):
    """A stage of base blocks: outputs, the input's and every parameter's gradient equal the ATen
    attention's bit for bit (each key's gradient is summed over the later blocks in autograd's order;
    200 channels in one head over two blocks is where ATen's bmm leaves its own loop for gemm)."""
    from mrla_nas.layers import fused_attention, mrla_base

    torch.manual_seed(0)
    options = {"mrla_channel_wise": True} if heads is None else {"mrla_heads": heads}
    stage = nn.ModuleList([_perturbed(MRLABasicBlock(channels, channels, mrla_form="base", **options).to(dtype))
                           for _ in range(blocks)]).train()
    stage[0].mrla.as_first_block()
    x0 = torch.randn(batch, channels, side, side, dtype=dtype)
    g = torch.randn(batch, channels, side, side, dtype=dtype)
    calls, real = [], fused_attention.base_attention
    monkeypatch.setattr(mrla_base, "base_attention", lambda *a: calls.append(1) or real(*a))
    results = []
    for cpp in (True, False):
        if not cpp:  # the attention from ATen operators; every other kernel as before
            monkeypatch.setattr(mrla_base, "use_cpu_kernels", lambda t: False)
        model, x = copy.deepcopy(stage), x0.clone().requires_grad_()
        _run_stage(model, x).backward(g)
        results.append([_run_stage(copy.deepcopy(stage), x0).detach(), x.grad] + [p.grad for p in model.parameters()])
    assert len(calls) == 2 * (blocks - 1)  # the C++ op ran in every block but the stage's first (twice)
    for a, b in zip(*results):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))


def test_gradcheck_of_the_cpp_base_attention():
    from mrla_nas.layers.fused_attention import base_attention

    torch.manual_seed(0)
    pooled, wq, wk, k0, k1 = [torch.randn(*s, dtype=torch.float64, requires_grad=True)
                              for s in ((3, 12), (1, 1, 3), (1, 1, 3), (3, 12), (3, 12))]
    w = torch.randn(3, 12, 3, dtype=torch.float64)

    def f(*a):
        weights, key = base_attention(a[0], a[1], a[2], list(a[3:]), 4, 0.5)
        return (weights * w).sum() + key.square().sum()

    assert torch.autograd.gradcheck(f, (pooled, wq, wk, k0, k1))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", ["mrla_light_resnet20", "mrla_base_resnet20"])
def test_second_derivatives_equal_the_plain_path(name, train):
    """A gradient penalty (the input gradient's norm, backpropagated): under create_graph=True the C++
    ops' gradients come from their formulas with the graph recorded. Their own backward is opaque to
    autograd; it once made every MRLA parameter's second-order gradient vanish without a word."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5).double().train(train)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    grads = []
    for plain in (False, True):
        m = copy.deepcopy(model)
        with plain_pytorch() if plain else torch.enable_grad():
            (gx,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
            gx.square().sum().backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    mrla = 0
    for n, ref in grads[1].items():
        got = grads[0][n]
        assert (got is None) == (ref is None), n
        if ref is not None:
            mrla += ".mrla." in n or "bn_mrla" in n
            torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9 * max(1.0, ref.abs().max().item()), msg=n)
    assert mrla > 0


def _token_light_grads(unit, x, o, g, plain: bool):
    with plain_pytorch() if plain else torch.enable_grad():
        unit.zero_grad()
        x.grad = o.grad = None
        out = unit(x, o)
        out.backward(g)
    return [out.detach(), x.grad, o.grad] + [p.grad for p in unit.parameters()]


@pytest.mark.parametrize("batch,side,channels,heads", [(2, 4, 64, 2), (3, 7, 48, 3), (1, 1, 16, 1), (2, 2, 20, 5),
                                                       (2, 3, 24, None), (0, 3, 16, 2)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_the_deit_light_value_op_equals_the_plain_path(batch, side, channels, heads, dtype, tol):
    """TokenMRLALight's C++ op (fused_tokens.py, token layout) against its plain path: the output,
    both inputs' and every parameter's gradient; odd grids (1x1, 2x2), channel counts that are no
    multiple of a vector, an empty batch. float32 differs by the conv's order of taps only (its
    GELU is ATen's own erf approximation)."""
    from mrla_nas.layers import TokenMRLALight
    torch.manual_seed(0)
    unit = TokenMRLALight(channels, heads=heads).to(dtype)
    with torch.no_grad():
        for norm in (unit.normx, unit.normo):
            norm.weight.normal_()
            norm.bias.normal_()
    n = 1 + side * side
    x, o = (torch.randn(batch, n, channels, dtype=dtype, requires_grad=True) for _ in range(2))
    g = torch.randn(batch, n, channels, dtype=dtype)
    got, ref = _token_light_grads(unit, x, o, g, False), _token_light_grads(unit, x, o, g, True)
    for a, b in zip(got, ref):
        assert a is not None and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()) if b.numel() else tol)


def test_the_deit_light_value_op_gradchecks_and_has_second_derivatives():
    from mrla_nas.layers.fused_tokens import token_light_value, token_value_formula
    torch.manual_seed(0)
    b, s, c = 2, 3, 6
    args = [torch.randn(b, 1 + s * s, c), torch.randn(b, 1 + s * s, c), torch.randn(c, 1, 3, 3),
            torch.rand(b, c), torch.randn(c)]
    args = [a.double().requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *t: token_light_value(*t, 1, s), args)
    assert torch.autograd.gradgradcheck(lambda *t: token_light_value(*t, 1, s), args)
    torch.testing.assert_close(token_light_value(*args, 1, s), token_value_formula(*args, 1, s), rtol=1e-12, atol=1e-12)
