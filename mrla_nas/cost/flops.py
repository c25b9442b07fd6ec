"""Parameters and FLOPs of a network, counted by fvcore in eval mode, under one of the conventions
:mod:`mrla_nas.cost` describes."""
from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from ..models.build import build_model
from ..settings import logger_level
from . import CONVENTIONS

with warnings.catch_warnings():  # fvcore's import scripts a helper, which newer torch warns about
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter, get_shape


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _weighted_layer_sum(inputs, outputs) -> int:
    # inputs: weights [B, C, t], values...; output [B, C, H, W]: t multiply-adds per output element
    t = get_shape(inputs[0])[-1]
    return t * _prod(get_shape(outputs[0]))


def _constant_ints(value) -> list:
    """The int list of a traced argument (a constant, or a prim::ListConstruct of constants)."""
    ivalue = value.toIValue()
    if ivalue is None:
        ivalue = [v.toIValue() for v in value.node().inputs()]
    return list(ivalue) if isinstance(ivalue, (list, tuple)) else [ivalue]


def _max_pool(inputs, outputs) -> int:
    kernel = _constant_ints(inputs[1])
    k = _prod(kernel) if len(kernel) > 1 else kernel[0] ** 2
    return k * _prod(get_shape(outputs[0]))


def _sdpa(inputs, outputs) -> int:
    # F.scaled_dot_product_attention (timm's fused attention): Q K^T and A V, each N x N_k x d
    # multiply-adds per (sample, head), what fvcore counts for the two matmuls of the unfused form
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    return 2 * _prod(q) * k[-2]


def _sdpa_complete(inputs, outputs) -> int:
    # ... plus the scaling (1), the softmax (3) of the N x N_k scores
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    return _sdpa(inputs, outputs) + 4 * _prod(q[:-1]) * k[-2]


_FVCORE_EXTRA = {"prim::PythonOp.WeightedLayerSum": _weighted_layer_sum,
                 "aten::scaled_dot_product_attention": _sdpa}

_ELEMENTWISE = ["aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::mul", "aten::mul_", "aten::div",
                "aten::div_", "aten::addcmul", "aten::addcmul_", "aten::relu", "aten::relu_", "aten::sigmoid",
                "aten::sigmoid_", "aten::gelu", "aten::silu", "aten::silu_", "aten::hardswish", "aten::exp",
                "aten::rsub", "aten::neg"]
_DATA_MOVEMENT = ["aten::repeat_interleave", "aten::stack", "aten::cat", "aten::expand_as", "aten::contiguous",
                  "aten::dropout", "aten::dropout_", "aten::feature_dropout", "aten::clone", "aten::copy_",
                  "aten::zeros_like", "aten::ones_like", "aten::empty_like", "aten::fill_", "aten::zero_",
                  "aten::scatter_", "aten::index", "aten::gather", "aten::pad", "aten::constant_pad_nd"]

_COMPLETE_EXTRA = {
    **_FVCORE_EXTRA,
    **{op: elementwise_flop_counter(0, 1) for op in _ELEMENTWISE},
    **{op: (lambda inputs, outputs: 0) for op in _DATA_MOVEMENT},
    "aten::softmax": elementwise_flop_counter(0, 3),
    "aten::scaled_dot_product_attention": _sdpa_complete,
    "aten::max_pool2d": _max_pool,
    "aten::mean": elementwise_flop_counter(1, 0),
    "aten::sum": elementwise_flop_counter(1, 0),
}

HANDLES = {"fvcore": _FVCORE_EXTRA, "complete": _COMPLETE_EXTRA}  # fvcore's extra op handles per convention


@dataclass(frozen=True)
class Cost:
    """What :func:`measure` returns."""

    params: int
    flops: int
    convention: str
    input_shape: Tuple[int, ...]
    by_operator: Dict[str, int] = field(default_factory=dict, compare=False)
    uncounted: Dict[str, int] = field(default_factory=dict, compare=False)  # operator -> occurrences

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def count_params(model: nn.Module) -> int:
    """Every parameter, trainable or not (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


def flop_analysis(model: nn.Module, inputs: Tuple[torch.Tensor, ...], convention: str = "fvcore") -> FlopCountAnalysis:
    """An fvcore ``FlopCountAnalysis`` with mrla-nas's handles for ``convention``, warnings off."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; allowed: {list(CONVENTIONS)}")
    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle(**HANDLES[convention])
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")


def measure(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224), convention: str = "fvcore") -> Cost:
    """Params and FLOPs of ``model`` on one input of ``input_shape``, counted by fvcore in eval mode.

    The model's train/eval mode is restored afterwards. FLOPs are for the whole batch given.

    >>> import timm
    >>> measure(timm.create_model("resnet50"), (1, 3, 224, 224)).flops
    4111512576
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.zeros(tuple(input_shape), device=device)
        analysis = flop_analysis(model, (x,), convention)
        # Tracing prints TracerWarnings and fvcore logs skipped operators; the counts are what matter.
        with logger_level("fvcore", logging.ERROR), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            total = analysis.total()
            by_op = {k: int(v) for k, v in analysis.by_operator().items()}
            uncounted = dict(analysis.unsupported_ops())
    finally:
        model.train(was_training)
    return Cost(params=count_params(model), flops=int(round(total)), convention=convention,
                input_shape=tuple(input_shape), by_operator=by_op, uncounted=uncounted)


@functools.lru_cache(maxsize=4096)
def _measure_canonical(arch, input_shape: Tuple[int, ...], convention: str) -> Cost:
    return measure(build_model(arch), input_shape, convention)


def measure_arch(arch, input_shape: Sequence[int], convention: str = "fvcore") -> Cost:
    """:func:`measure` of an ArchConfig's network, cached by the config's canonical form.

    >>> from mrla_nas import ArchConfig
    >>> arch = ArchConfig.from_dict({"block": "basic", "layers": [1], "channels": [16], "stem": "small",
    ...                              "num_classes": 10, "stages": ["light"]})
    >>> measure_arch(arch, (1, 3, 32, 32)).params
    5504
    """
    return _measure_canonical(arch.canonical(), tuple(input_shape), convention)
