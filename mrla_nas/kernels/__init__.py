"""Optional C++ kernels, compiled on first use with torch's JIT extension builder.

Compilation needs a C++ compiler and ninja (a dependency of mrla-nas); the result is cached under
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), so only the first process pays the
~30 s. Where it cannot be built, or with ``MRLA_NAS_FUSED=0``, the layers use their plain PyTorch
path, which computes the same function. Imports nothing of the package but :mod:`mrla_nas.settings`.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional

from ..settings import environment, logger_level

_SOURCES = Path(__file__).parent


def _arch_flag(capability: str) -> list:
    # The cached build is named after the CPU capability, so a machine with a different one builds
    # its own instead of loading instructions it lacks.
    return {"AVX512": ["-march=x86-64-v4"], "AVX2": ["-march=x86-64-v3"]}.get(capability, [])


def _path_with_ninja_first() -> str:
    # torch runs `ninja` from PATH. The pip-installed one goes first, so that every process (the
    # venv's python called without activating the venv, Ray workers) uses the same ninja: a
    # different ninja version rejects the build log and rebuilds everything.
    path = os.environ.get("PATH", "")
    try:
        import ninja
    except ImportError:
        return path
    return path if path.split(os.pathsep)[0] == ninja.BIN_DIR else ninja.BIN_DIR + os.pathsep + path


@functools.lru_cache(maxsize=None)
def cpu_kernels() -> Optional[ModuleType]:
    """The CPU kernels of both MRLA forms (``mrla_cpu.cpp``), or None where unavailable."""
    if os.environ.get("MRLA_NAS_FUSED", "1") == "0":
        return None
    try:
        return compile_kernels(_SOURCES / "mrla_cpu.cpp")
    except Exception as e:  # no compiler, no ninja, read-only cache...: the PyTorch path still works
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"mrla-nas: MRLA CPU kernels unavailable ({first}); using the PyTorch path, "
                      "which is slower", RuntimeWarning, stacklevel=2)
        return None


def compile_kernels(source: Path, name: str = "mrla_nas_cpu") -> ModuleType:
    """Builds (or loads from the cache) the kernel extension from ``source`` with the flags the
    package uses; ``name`` gets the CPU capability appended. Also used to build another revision's
    kernels beside these (experiments/ab_kernels.py). Raises where it cannot build."""
    import torch

    # importing cpp_extension on a CPU-only torch logs "No CUDA runtime is found": not our concern
    with logger_level("torch.utils.cpp_extension", logging.ERROR):
        from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    with environment(PATH=_path_with_ninja_first()):  # for this build only
        return cpp_extension.load(
            name=f"{name}_{capability.lower()}",
            sources=[str(source)],
            extra_cflags=["-O3", "-fopenmp", *_arch_flag(capability)],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
