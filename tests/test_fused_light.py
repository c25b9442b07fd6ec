"""The fused MRLA-light branch (C++ kernel) computes what the plain PyTorch path computes."""
import copy
import os

import pytest
import timm
import torch
from torch import nn

from mrla_nas.kernels import light_branch
from mrla_nas.layers.fused_light import fused_light_available
from mrla_nas.models.blocks import MRLABasicBlock, MRLABottleneck

if os.environ.get("MRLA_NAS_FUSED") == "0":
    pytest.skip("MRLA_NAS_FUSED=0: the fused kernel is switched off", allow_module_level=True)


def test_the_kernel_builds():
    assert light_branch() is not None  # a compiler and ninja are part of the supported set-up


def _pair(block, cin, planes, dtype, momentum=0.1):
    m = block(cin, planes, mrla_form="light").to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
        m.bn_mrla.running_mean.normal_()
        m.bn_mrla.running_var.uniform_(0.5, 2.0)
    m.bn_mrla.momentum = momentum
    plain = copy.deepcopy(m)
    plain.mrla_fused = False
    return m, plain


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
    assert fused_light_available(x, fused.bn_mrla, fused.mrla_drop_path)
    y, y2 = fused(x), plain(x2)
    g = torch.randn_like(y)
    y.backward(g)
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
        fused(x), plain(x)
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
    assert not fused_light_available(x.half(), block.bn_mrla, block.mrla_drop_path)
    assert not fused_light_available(x, nn.SyncBatchNorm(16), block.mrla_drop_path)
    dropping = timm.layers.DropPath(0.2).train()
    assert not fused_light_available(x, block.bn_mrla, dropping)
    assert fused_light_available(x, block.bn_mrla, dropping.eval())


def test_whole_network_fused_equals_plain():
    torch.manual_seed(0)
    model = timm.create_model("mrla_light_resnet20", num_classes=10).train()
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if hasattr(m, "mrla_fused"):
            m.mrla_fused = False
    x = torch.randn(4, 3, 32, 32)
    y, y2 = model(x), plain(x)
    w = torch.randn_like(y)  # not y.sum(): its gradients cancel to rounding noise after the last BN
    (y * w).sum().backward()
    (y2 * w).sum().backward()
    assert _rel(y, y2) < 1e-5
    for p, p2 in zip(model.parameters(), plain.parameters()):
        # atol: a stage's last bn_mrla.bias has a zero gradient (the next stage's BNs remove a constant
        # shift), so its fused and plain values are both rounding noise
        torch.testing.assert_close(p.grad, p2.grad, rtol=1e-4, atol=1e-6)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("MRLA_NAS_FUSED", "0")
    assert light_branch.__wrapped__() is None
