"""The paper's shape rules, in one place (no torch): heads per stage and the ECA kernel size.

Every other module (the MRLA units, the models, ``ArchConfig``, the search space) asks these
functions, so a stage that builds is a stage that validates, and the other way round.

>>> paper_heads("light", 256), paper_heads("base", 256), paper_heads("light", 16)
(8, 16, 1)
>>> [eca_kernel_size(c) for c in (64, 256, 512, 1024, 2048)]
[3, 5, 5, 5, 7]
"""
from __future__ import annotations

import math

# Channels per head of the official networks: the ResNets use 32 for MRLA-light and 16 for
# MRLA-base, the DeiTs 16 for both (``dim_mrla``).
PAPER_DIM_PER_HEAD = {"resnet": {"light": 32, "base": 16}, "vit": {"light": 16, "base": 16}}


def paper_heads(form: str, width: int, family: str = "resnet") -> int:
    """The paper's default head count for an MRLA unit of ``width`` channels in a ``family`` network.

    ``PAPER_DIM_PER_HEAD[family][form]`` channels per head; ``gcd(width, d)`` channels for widths
    that are not multiples of d (the 16-wide stages of a CIFAR ResNet get one 16-channel head).

    >>> paper_heads("light", 192, "vit"), paper_heads("light", 192)
    (12, 6)
    """
    if family not in PAPER_DIM_PER_HEAD:
        raise ValueError(f"family={family!r}; allowed: {sorted(PAPER_DIM_PER_HEAD)}")
    if form not in PAPER_DIM_PER_HEAD[family]:
        raise ValueError(f"form={form!r}; allowed: {sorted(PAPER_DIM_PER_HEAD[family])}")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width={width!r}: expected a positive integer")
    return width // math.gcd(width, PAPER_DIM_PER_HEAD[family][form])


def eca_kernel_size(channels: int) -> int:
    """The ECA rule the official code uses for the Conv1d over the GAP descriptor:
    ``t = int(|(log2(C) + 1) / 2|)``, ``k = t`` if odd else ``t + 1``."""
    t = int(abs((math.log2(channels) + 1) / 2.0))
    return t if t % 2 else t + 1
