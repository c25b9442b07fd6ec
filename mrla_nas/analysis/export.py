"""Choosing a run's network and writing it as an architecture file that rebuilds it exactly
(``mrla-nas export``): the config, its measured metrics and where it came from."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pandas as pd
import yaml

from ..arch import NetworkConfig, arch_from_dict, load_arch_document
from ..cost import CONVENTIONS
from ..errors import ConfigError, is_int, is_pos_int, show
from ..rundir.files import read_records
from ..space.recipe import SEARCH_RECIPE
from .run import Run


def select(run: Run, trial: Optional[int] = None, knee: bool = False, max_flops: Optional[float] = None,
           min_accuracy: Optional[float] = None) -> pd.Series:
    """The trial to export: an id, the knee, the most accurate front trial within ``max_flops``, or
    the cheapest front trial reaching ``min_accuracy`` (default: the knee)."""
    if run.trials.empty:
        raise ConfigError(f"run={str(run.path)!r}: no trials yet")
    if trial is not None:
        rows = run.trials[run.trials["trial_id"] == trial]
        if rows.empty:
            raise ConfigError(f"--trial={trial}: no such trial in {run.path} (ids 0..{int(run.trials['trial_id'].max())})")
        row = rows.iloc[0]
        if pd.isna(row["accuracy"]):
            raise ConfigError(f"--trial={trial}: it has no accuracy (status {row['status']})")
        return row
    if run.front.empty:
        raise ConfigError(f"run={str(run.path)!r}: no feasible trial finished at full fidelity; nothing to export")
    front = run.front
    if max_flops is not None:
        ok = front[front["flops"] <= max_flops]
        if ok.empty:
            raise ConfigError(f"--max-flops={max_flops:g}: no front trial is that cheap "
                              f"(cheapest: {int(front['flops'].min()):,})")
        return ok.sort_values(["accuracy", "flops"], ascending=[False, True]).iloc[0]
    if min_accuracy is not None:
        ok = front[front["accuracy"] >= min_accuracy]
        if ok.empty:
            raise ConfigError(f"--min-accuracy={min_accuracy:g}: no front trial reaches it "
                              f"(best: {front['accuracy'].max():.4f})")
        return ok.sort_values(["flops", "accuracy"], ascending=[True, False]).iloc[0]
    return front[front["trial_id"] == run.knee].iloc[0]


def export(run: Run, row: pd.Series, out_path) -> Path:
    """Write the chosen ArchConfig with its measured metrics and provenance (``mrla_nas.load_arch`` reads it)."""
    rec = read_records(run.path)[int(row["trial_id"])]
    arch = arch_from_dict(rec["arch"])
    doc = {"arch": arch.to_dict(),
           "metrics": {"accuracy": float(row["accuracy"]), "flops": int(row["flops"]), "params": int(row["params"]),
                       "flops_convention": run.space.flops_convention,
                       "input_shape": [1, arch.in_chans, run.space.proxy["resolution"], run.space.proxy["resolution"]],
                       "fidelity": float(row["fidelity"])},
           "provenance": {"run": str(run.path.resolve()), "trial": int(row["trial_id"]), "key": arch.key(),
                          "seed": run.space.seed, "space": run.space.name,
                          "proxy": {k: run.space.proxy[k] for k in ("dataset", "train_size", "val_size", "epochs",
                                                                      "resolution") + SEARCH_RECIPE}}}
    out_path = Path(out_path)
    out_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out_path


def read_export(path) -> Tuple[NetworkConfig, Dict[str, Any]]:
    """An architecture file and the ``metrics`` that ``mrla-nas build`` reads from it, checked: a
    recorded field that cannot be used is a ConfigError naming it, never a count at another size.
    A plain config (no ``metrics``) gives {}; fields ``build`` does not read are left as they are."""
    arch, metrics = load_arch_document(path)
    where = f"{path}: metrics"
    shape = metrics.get("input_shape")
    if shape is not None:
        expected = f"[1, {arch.in_chans}, H, W] (one image of this network's {arch.in_chans} channel(s))"
        if not (isinstance(shape, list) and len(shape) == 4 and all(is_pos_int(v) for v in shape)
                and shape[:2] == [1, arch.in_chans]):
            raise ConfigError(f"{where}.input_shape={show(shape)}: expected {expected}")
        if shape[2] != shape[3]:
            raise ConfigError(f"{where}.input_shape={show(shape)}: expected a square input (H == W), as a "
                              "search's proxy resolution is")
        arch.check_input(shape[-1], f"{where}.input_shape[-1]")
    convention = metrics.get("flops_convention")
    if convention is not None and convention not in CONVENTIONS:
        raise ConfigError(f"{where}.flops_convention={show(convention)}: allowed: {', '.join(CONVENTIONS)}")
    for field in ("flops", "params"):
        value = metrics.get(field)
        if value is not None and not (is_int(value) and value >= 0):
            raise ConfigError(f"{where}.{field}={show(value)}: expected a whole number >= 0")
    return arch, metrics
