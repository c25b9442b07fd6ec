"""A run's ``manifest.json``: the library versions, seed, FLOPs convention, host, and one entry per
search session."""
from __future__ import annotations

import json
import platform
import socket
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import ConfigError, show
from .files import write_json_atomic


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("mrla-nas", "torch", "torchvision", "timm", "optuna", "ray", "fvcore", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def read_manifest(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The run's manifest (None before the first session); a one-line ConfigError when damaged, so a
    resume stops before it changes anything rather than overwrite the run's history of sessions."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        manifest = f"<not JSON: {getattr(e, 'msg', 'not UTF-8')}>"
    if not (isinstance(manifest, dict) and isinstance(manifest.get("sessions", []), list)):
        raise ConfigError(f"{path}: {show(manifest)}: expected the run's manifest (a mapping with a list of "
                          "sessions); restore it from a copy, or move it aside to start a new one (the trials "
                          "do not depend on it)")
    return manifest


def write_manifest(run_dir: Path, space, session: Dict[str, Any]) -> None:
    path = Path(run_dir) / "manifest.json"
    manifest = read_manifest(run_dir) or {
        "name": space.name, "seed": space.seed, "flops_convention": space.flops_convention,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sessions": []}
    manifest.setdefault("sessions", [])
    manifest["versions"] = versions()
    manifest["host"] = socket.gethostname()
    manifest["sessions"].append(session)
    write_json_atomic(path, manifest)
