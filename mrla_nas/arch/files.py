"""Reading a config from a file: a YAML or JSON architecture config, or the ``arch:`` section of what
``mrla-nas export`` writes (with its ``metrics``)."""
from __future__ import annotations

from typing import Any, Dict, Tuple

from ..errors import ConfigError, show
from ..yaml_io import load_yaml_file
from .base import NetworkConfig, config_from_dict


def load_arch(path) -> NetworkConfig:
    """Read a config from a YAML or JSON file (an exported file with ``arch:`` works too); read as
    safely and boundedly as a search space (:mod:`mrla_nas.yaml_io`)."""
    data = load_yaml_file(path, "architecture file")  # YAML is a superset of JSON
    return config_from_dict(data, where=str(path))


def load_arch_document(path) -> Tuple[NetworkConfig, Dict[str, Any]]:
    """A config and, for an exported file, its ``metrics`` (input shape, FLOPs...; {} otherwise)."""
    data = load_yaml_file(path, "architecture file")
    arch = config_from_dict(data, where=str(path))
    metrics = data.get("metrics") if isinstance(data.get("arch"), dict) else None
    if metrics is not None and not isinstance(metrics, dict):
        raise ConfigError(f"{path}: metrics={show(metrics)}: expected a mapping (what `mrla-nas export` writes)")
    return arch, metrics or {}
