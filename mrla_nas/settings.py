"""Process-wide settings changed for one block of work and restored after it, whatever happens inside:
a logger's level, Optuna's verbosity, torch's thread count, environment variables.

mrla-nas changes none of them at import; every change goes through one of these, so a notebook that
calls ``search`` or ``measure`` keeps its own settings afterwards. Every layer of the package may
import this module; it imports nothing of the package, and torch or Optuna only when asked.

>>> import logging, os
>>> with logger_level("fvcore", logging.ERROR):
...     logging.getLogger("fvcore").level == logging.ERROR
True
>>> logging.getLogger("fvcore").level == logging.NOTSET
True
>>> with environment(MRLA_NAS_EXAMPLE="1"):
...     os.environ["MRLA_NAS_EXAMPLE"]
'1'
>>> "MRLA_NAS_EXAMPLE" in os.environ
False
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Optional


@contextlib.contextmanager
def logger_level(name: str, level: int) -> Iterator[logging.Logger]:
    """``logging.getLogger(name)`` at ``level`` inside the block, its own level again after it."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield logger
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def optuna_verbosity(level: int) -> Iterator[None]:
    """Optuna's verbosity (``optuna.logging.WARNING``: no "A new study created" or "Trial N finished"
    line per trial) inside the block, the caller's again after it."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """torch's intra-op thread count at ``threads`` (None: unchanged) inside the block."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(previous)


@contextlib.contextmanager
def environment(**variables: Optional[str]) -> Iterator[None]:
    """Environment variables set (a None value: removed) inside the block, as they were after it."""
    previous = {name: os.environ.get(name) for name in variables}
    try:
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
