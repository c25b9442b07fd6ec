"""mrla-nas: where does multi-head recurrent layer attention (MRLA, ICLR 2023) pay off, and at what cost.

The package, bottom layer first; a layer imports only the layers below it (``tests/test_layout.py``):

- ``errors``, ``settings``, ``yaml_io``: the error type, settings restored after use, safe YAML
- ``arch``: one network as plain data (ArchConfig, ViTConfig), the paper's shape defaults; no torch
- ``kernels``, ``layers``: the MRLA units and their C++ CPU kernels
- ``models``: MRLA networks on timm, their builder and timm registrations, the official converter
- ``cost``: params and FLOPs (fvcore) under a named convention
- ``space``: the YAML search space, its schema, summary and templates
- ``training``: datasets, the proxy trainer, full training
- ``rundir``: the run directory (records, study journal, trials table, resume bookkeeping)
- ``objectives``: Pareto fronts, hypervolume, knee; successive halving by non-dominated rank
- ``search``: what to propose next, and the Ray Tune search that trains it
- ``analysis``: a run read back: front, export, validation, explanation, tabular benchmarks, replay
- ``cli``: the ``mrla-nas`` command, a thin layer over the above

``import mrla_nas`` loads no torch (``mrla-nas --help`` starts fast); the names below that need it load
on first use. Importing the package registers the MRLA networks in timm, at the moment timm is
imported (now, if it already is):

>>> import mrla_nas, timm
>>> model = timm.create_model("mrla_light_resnet20", num_classes=10)
"""
import importlib

import wrapt

from .arch import ArchConfig, StageConfig, load_arch
from .errors import ConfigError

__version__ = "0.1.0"
__all__ = ["ArchConfig", "StageConfig", "ConfigError", "load_arch", "build_model", "MRLALight", "MRLABase",
           "MRLAResNet", "from_official_state_dict", "__version__"]

# The public names that need torch: loaded from their modules on first use (PEP 562).
_LAZY = {"build_model": "mrla_nas.models.build", "MRLAResNet": "mrla_nas.models.mrla_resnet",
         "from_official_state_dict": "mrla_nas.models.official", "MRLALight": "mrla_nas.layers.mrla_light",
         "MRLABase": "mrla_nas.layers.mrla_base"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mrla_nas' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


# timm.create_model("mrla_...") finds the networks once mrla_nas.models has registered them; wrapt runs
# the registration when timm's own import completes (so a program that never imports timm never pays
# for torch), or at once if timm is imported already.
wrapt.register_post_import_hook(lambda timm: importlib.import_module("mrla_nas.models"), "timm")
