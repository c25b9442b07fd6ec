"""The run directory: the unit of resume, and what ``pareto`` / ``export`` read.

    runs/NAME/
      space.yaml        frozen copy of the space, defaults resolved
      manifest.json     versions, seed, FLOPs convention, host, sessions
      study.journal     Optuna JournalStorage (the source of truth for trial states)
      trials/NNNNN.json one record per Optuna trial (arch, cost, per-epoch metrics, status, error)
      tune/part-K/      one Ray Tune experiment per search session
      trials.csv        the trials table, rebuilt from the journal and the records
"""
from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import pandas as pd
import yaml

from .arch import ArchConfig, ConfigError

if TYPE_CHECKING:  # optuna is imported where it is used: pareto/export need not load it
    import optuna

STUDY_NAME = "mrla-nas"


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a killed process never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, default=float)
    os.replace(tmp, path)


def record_path(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "trials" / f"{number:05d}.json"


def read_records(run_dir: Path) -> Dict[int, Dict[str, Any]]:
    out = {}
    for p in sorted((Path(run_dir) / "trials").glob("*.json")):
        with open(p) as f:
            rec = json.load(f)
        out[rec["trial_id"]] = rec
    return out


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("mrla-nas", "torch", "torchvision", "timm", "optuna", "ray", "fvcore", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_manifest(run_dir: Path, space, session: Dict[str, Any]) -> None:
    path = Path(run_dir) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {
        "name": space.name, "seed": space.seed, "flops_convention": space.flops_convention,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sessions": []}
    manifest["versions"] = versions()
    manifest["host"] = socket.gethostname()
    manifest["sessions"].append(session)
    write_json_atomic(path, manifest)


def freeze_space(run_dir: Path, space) -> None:
    (Path(run_dir) / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))


def check_run_dir(run_dir: Path) -> None:
    if not (Path(run_dir) / "space.yaml").is_file() or not (Path(run_dir) / "study.journal").is_file():
        raise ConfigError(f"run={str(run_dir)!r}: not a mrla-nas run directory (no space.yaml / study.journal)")


def open_study(run_dir: Path, sampler: Optional["optuna.samplers.BaseSampler"] = None,
               directions=("maximize", "minimize")) -> "optuna.Study":
    """The run's Optuna study, from its JournalStorage file (created when missing)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Using an existing study" on every read
    storage = JournalStorage(JournalFileBackend(str(Path(run_dir) / "study.journal")))
    return optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler,
                               directions=list(directions), load_if_exists=True)


def trials_table(run_dir: Path) -> pd.DataFrame:
    """One row per trial: id, status, config columns, key, params, FLOPs, accuracy per epoch and final,
    fidelity, error, wall time. Status: complete, stopped (early-stopped), infeasible, failed,
    interrupted (the session was killed; its config was queued again), running."""
    import optuna

    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    study = open_study(run_dir)
    records = read_records(run_dir)
    rows: List[Dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        rec = records.get(t.number, {})
        status = rec.get("status")
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("interrupted"):
            status = "interrupted"
        elif t.state == optuna.trial.TrialState.FAIL:
            status = "failed"
        elif t.state == optuna.trial.TrialState.WAITING:
            continue
        elif status is None:
            status = "running"
        elif status == "running" and t.state == optuna.trial.TrialState.COMPLETE:
            # the scheduler ended it: early (stopped) or right after its last epoch (complete)
            status = "complete" if rec.get("fidelity", 0.0) >= 1.0 else "stopped"
        arch_dict = rec.get("arch") or t.user_attrs.get("arch")
        row = {"trial_id": t.number, "status": status}
        if arch_dict:
            arch = ArchConfig.from_dict(arch_dict)
            row["summary"] = arch.summary()
            for i, s in enumerate(arch.canonical().stages, start=1):
                row[f"stage{i}_form"] = s.form
                row[f"stage{i}_heads"] = s.heads
                row[f"stage{i}_reduction"] = s.reduction
            row["key"] = arch.key()
        row["params"] = rec.get("params", t.user_attrs.get("params"))
        row["flops"] = rec.get("flops", t.user_attrs.get("flops"))
        hist = rec.get("history", [])
        for h in hist:
            row[f"acc_epoch_{h['epoch']}"] = h["val_accuracy"]
        row["accuracy"] = hist[-1]["val_accuracy"] if hist and status in ("complete", "stopped") else None
        row["fidelity"] = rec.get("fidelity", 0.0)
        row["error"] = rec.get("error") or t.user_attrs.get("error")
        row["wall_s"] = rec.get("wall_s")
        row["train_s"] = rec.get("train_s")
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values("trial_id").reset_index(drop=True)
        for col in df.columns:
            if col.endswith(("_heads", "_reduction")) or col in ("params", "flops"):
                df[col] = df[col].astype("Int64")
    return df


def write_trials_csv(run_dir: Path) -> pd.DataFrame:
    df = trials_table(run_dir)
    df.to_csv(Path(run_dir) / "trials.csv", index=False)
    return df
