"""The official code's defaults for an MRLA unit's shape, in one place (no torch): heads per width
and the ECA kernel size.

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


def official_heads(width: int, dim_per_head: int):
    """The official code's head count for ``width`` channels at ``dim_per_head`` channels per head:
    ``int(width / dim_per_head)`` heads of ``width / heads`` channels each (so 80 channels at 32 per
    head are 2 heads of 40), or None where the official code cannot build the unit (fewer channels
    than ``dim_per_head``: zero heads; or a count that does not divide the width).

    >>> official_heads(256, 32), official_heads(80, 32), official_heads(16, 32), official_heads(100, 32)
    (8, 2, None, None)
    """
    heads = int(width / dim_per_head)
    return heads if heads >= 1 and width % heads == 0 else None


def paper_heads(form: str, width: int, family: str = "resnet") -> int:
    """The paper's default head count for an MRLA unit of ``width`` channels in a ``family`` network.

    The official code's rule for ``PAPER_DIM_PER_HEAD[family][form]`` channels per head
    (:func:`official_heads`), so that an official checkpoint of any width is rebuilt exactly. Where
    that code cannot build the unit (widths below d, as the 16-wide stages of a CIFAR ResNet, or
    counts that do not divide the width), ``gcd(width, d)`` channels per head: one 16-channel head
    for a 16-wide stage.

    >>> paper_heads("light", 192, "vit"), paper_heads("light", 192), paper_heads("light", 80)
    (12, 6, 2)
    """
    if family not in PAPER_DIM_PER_HEAD:
        raise ValueError(f"family={family!r}; allowed: {sorted(PAPER_DIM_PER_HEAD)}")
    if form not in PAPER_DIM_PER_HEAD[family]:
        raise ValueError(f"form={form!r}; allowed: {sorted(PAPER_DIM_PER_HEAD[family])}")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width={width!r}: expected a positive integer")
    d = PAPER_DIM_PER_HEAD[family][form]
    return official_heads(width, d) or width // math.gcd(width, d)


def eca_kernel_size(channels: int) -> int:
    """The ECA rule the official code uses for the Conv1d over the GAP descriptor:
    ``t = int(|(log2(C) + 1) / 2|)``, ``k = t`` if odd else ``t + 1``."""
    t = int(abs((math.log2(channels) + 1) / 2.0))
    return t if t % 2 else t + 1
