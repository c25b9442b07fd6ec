"""What a network costs: parameters and FLOPs counted by fvcore (``flops.py``), under a stated
convention. This package's root is torch-free, so the space reader and the command line can name the
conventions without loading torch; ``flops.py`` imports :mod:`mrla_nas.models` to build what it counts.

Conventions (1 FLOP = one multiply-add, fvcore's unit, in both):

``"fvcore"``
    fvcore's own handles (conv, linear, matmul/einsum, batch norm, layer norm, adaptive average
    pooling) plus one for MRLA-base's weighted sum over earlier blocks (``t`` multiply-adds per output
    element, what fvcore counts for the official ``einsum``) and one for
    ``F.scaled_dot_product_attention``, which fvcore cannot see (timm's fused attention: it would
    drop all attention matmuls, 179M on DeiT-T): 2 x N x N_k x d per sample and head, what it counts
    for the two matmuls of the unfused form. Everything else (sigmoid, softmax, elementwise
    add/mul, max-pool) costs 0, as fvcore leaves it. This reproduces the FLOPs the MRLA authors and
    most papers report; use it to compare with published numbers.

``"complete"``
    The above, plus what the network really computes and fvcore skips, each op costed per element of
    its output: add/sub/mul/div/addcmul/relu/sigmoid 1; softmax 3 (exp, sum, divide); max-pool
    ``k*k`` (comparisons); mean over a tensor 1 per input element. Pure data movement (view,
    stack, repeat, cat, ...) costs 0 but is listed, so no operator goes uncounted. Use it to rank
    architectures by what they cost to run.
"""

CONVENTIONS = ("fvcore", "complete")  # the FLOPs conventions (flops.py implements each)

__all__ = ["CONVENTIONS"]
