"""A run directory's files: JSON written atomically, the trial records' paths, the frozen space, and
the checks made before a run is read or written (see :mod:`mrla_nas.rundir` for the layout)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from ..errors import ConfigError
from .records import parse_record, record_number


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a killed process never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, default=float)
    os.replace(tmp, path)


def record_path(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "trials" / f"{number:05d}.json"


def read_record(run_dir: Path, number: int) -> Optional[Dict[str, Any]]:
    """Trial ``number``'s record, checked (:mod:`mrla_nas.records`), or None if it has none yet."""
    path = record_path(run_dir, number)
    return parse_record(path, number) if path.exists() else None


def mark_record(run_dir: Path, number: int, **fields) -> Dict[str, Any]:
    """Update (or start) trial ``number``'s record with ``fields``, atomically; returns the record."""
    rec = read_record(run_dir, number) or {"trial_id": number, "history": [], "fidelity": 0.0}
    rec.update(fields)
    write_json_atomic(record_path(run_dir, number), rec)
    return rec


def read_records(run_dir: Path) -> Dict[int, Dict[str, Any]]:
    """Every trial record of a run directory, checked, by trial number."""
    out = {}
    for p in sorted((Path(run_dir) / "trials").glob("*.json")):
        number = record_number(p)
        out[number] = parse_record(p, number)
    return out


def freeze_space(run_dir: Path, space) -> None:
    (Path(run_dir) / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))


def ensure_writable(run_dir: Path) -> None:
    """Create ``run_dir`` if needed and prove it (and its trials/) can be written, before a search
    touches anything in it; a ConfigError otherwise (nothing is changed)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for folder in (run_dir, run_dir / "trials"):
            if folder.is_dir():
                fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
                os.close(fd)
                os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"run directory {str(run_dir)!r}: cannot be written ({e.strerror}); nothing was changed. "
                          "Copy it somewhere writable, or give --runs-dir / --name for a new run") from None


def check_run_dir(run_dir: Path) -> None:
    if not (Path(run_dir) / "space.yaml").is_file() or not (Path(run_dir) / "study.journal").is_file():
        raise ConfigError(f"run={str(run_dir)!r}: not a mrla-nas run directory (no space.yaml / study.journal)")
