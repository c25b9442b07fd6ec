"""torch.compile of MRLA networks: both forms, eval and training gradients, as eager.

Under compilation the units run their plain PyTorch path (the C++ kernels and the autograd Functions
around them step aside), which inductor fuses; float64 keeps rounding out of the comparison, so a
wrong graph shows as O(1) differences. ``aot_eager`` (Dynamo's capture and AOT autograd, the graphs
inductor is given, without its code generation) keeps the fast suite fast; inductor itself, what a
user's ``torch.compile(model)`` runs, compiles for ~45 s from a cold cache and is a slow test."""
import pytest
import torch

from mrla_nas.models import MRLAResNet, MRLAVisionTransformer

NETWORKS = {
    "resnet": lambda: MRLAResNet(block="basic", layers=(2, 2), channels=(8, 16), stem_type="small",
                                 mrla=[{"form": "base"}, {"form": "light"}], num_classes=5, in_chans=1),
    "vit": lambda: MRLAVisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=4, num_heads=2,
                                         mrla=["base", "light"], mrla_group_size=2, num_classes=5),
}


def _grads(call, model, x):
    """``call(x)``'s output and the gradients it leaves on ``model``'s parameters (a compiled module
    shares them with the eager one)."""
    torch.manual_seed(1)  # the same dropout / drop-path draws, if any
    model.zero_grad(set_to_none=True)
    out = call(x)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend,name", [("aot_eager", "resnet"), ("aot_eager", "vit"),
                                          pytest.param("inductor", "resnet", marks=pytest.mark.slow)])
def test_compiled_network_matches_eager_in_eval_and_in_every_gradient(backend, name):
    torch.manual_seed(0)
    assert_compiled_matches_eager(NETWORKS[name]().double(), torch.randn(3, 1, 16, 16, dtype=torch.float64), backend)


def assert_compiled_matches_eager(model, x, backend: str) -> None:
    """``torch.compile(model)`` against ``model`` (float64): eval outputs, then training outputs and
    every parameter's gradient."""
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        model.eval()
        ref = model(x)
        assert torch.allclose(compiled(x), ref, rtol=0, atol=1e-10)
    model.train()
    out, grads = _grads(model, model, x)
    out_c, grads_c = _grads(compiled, model, x)
    assert torch.allclose(out_c, out, rtol=0, atol=1e-10)
    assert grads.keys() == grads_c.keys() and len(grads) == sum(1 for _ in model.parameters())
    for n, g in grads.items():
        assert torch.allclose(grads_c[n], g, rtol=1e-8, atol=1e-12 * (1 + g.abs().max().item())), n
