"""A run's ``manifest.json``: the library versions, seed, FLOPs convention, host, and one entry per
search session."""
from __future__ import annotations

import hashlib
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


def checkpoint_fingerprint(path) -> str:
    """sha256 of a checkpoint file (the weights every trial of a warm-started run started from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrained_fingerprints(space) -> Dict[str, str]:
    """sha256 of each checkpoint the space's networks warm-start from (``backbone.pretrained``)."""
    paths = [p for p in space.backbone.get("pretrained", ()) if p is not None]
    return {str(p): checkpoint_fingerprint(p) for p in paths}


def check_same_checkpoints(space, manifest: Optional[Dict[str, Any]]) -> Dict[str, str]:
    """The space's warm-start fingerprints, or a one-line ConfigError where a checkpoint is no longer
    the file the run's trials started from (a resume would mix two starting points)."""
    fingerprints = pretrained_fingerprints(space)
    for ckpt, recorded in ((manifest or {}).get("pretrained") or {}).items():
        if ckpt in fingerprints and fingerprints[ckpt] != recorded:
            raise ConfigError(f"backbone.pretrained={ckpt!r}: the checkpoint changed since this run's trials started "
                              f"from it (sha256 {recorded[:12]}..., now {fingerprints[ckpt][:12]}...); restore it, or "
                              "start a new run")
    return fingerprints


def write_manifest(run_dir: Path, space, session: Dict[str, Any]) -> None:
    """A session added to the manifest, with the fingerprints of the warm-start checkpoints."""
    path = Path(run_dir) / "manifest.json"
    manifest = read_manifest(run_dir) or {
        "name": space.name, "seed": space.seed, "flops_convention": space.flops_convention,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sessions": []}
    fingerprints = check_same_checkpoints(space, manifest)
    if fingerprints:
        manifest["pretrained"] = dict(manifest.get("pretrained") or {}, **fingerprints)
    manifest.setdefault("sessions", [])
    manifest["versions"] = versions()
    manifest["host"] = socket.gethostname()
    manifest["sessions"].append(session)
    write_json_atomic(path, manifest)
