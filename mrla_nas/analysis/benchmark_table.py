"""A tabular benchmark: a run that evaluated every network of a space (``search.sampler:
brute_force`` and a trial budget of at least the space's size), exported as one table.

One row per (network, seed, epoch): the network's key and per-stage choices, FLOPs and params,
validation accuracy and loss, training loss and seconds. A CSV with a provenance header of ``#``
lines (the space, the proxy recipe, the seeds, library versions, date, machine), read back by
:func:`load_table`; the replay (:mod:`~mrla_nas.analysis.replay`) answers searches from it.

>>> table = load_table("experiments/tables/fmnist_resnet20_default.csv")  # export_table(RUN, FILE) wrote it
>>> len(table.rows), table.seeds()    # 125 networks x 2 seeds x 2 epochs
(500, [0, 1])
"""
from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from ..arch import ArchConfig, arch_from_dict
from ..errors import ConfigError
from ..rundir.files import check_run_dir, read_records
from ..rundir.manifest import versions
from ..rundir.records import COMPLETE
from ..space import SearchSpace


LATENCY_COLUMNS = ("ms", "reference_ms", "ratio", "spread")  # a table's latency_* columns


@dataclass
class BenchmarkTable:
    rows: pd.DataFrame               # one row per (key, seed, epoch)
    provenance: Dict[str, Any]

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.provenance["space"], check_paths=False)

    def networks(self) -> pd.DataFrame:
        """One row per network: key, stage choices, flops, params (and its latency, where measured)."""
        cols = [c for c in self.rows.columns
                if c.startswith("stage") or c.startswith("latency_") or c in ("key", "summary", "arch", "flops",
                                                                               "params")]
        return self.rows[cols].drop_duplicates("key").reset_index(drop=True)

    def seeds(self) -> List[int]:
        return sorted(int(s) for s in self.rows["seed"].unique())

    def final_accuracy(self) -> Dict[str, float]:
        """key -> the network's last-epoch validation accuracy, mean over the table's seeds."""
        last = self.rows.sort_values("epoch").groupby(["key", "seed"]).tail(1)
        return last.groupby("key")["val_accuracy"].mean().to_dict()

    def curves(self) -> Dict[str, Dict[int, pd.DataFrame]]:
        """key -> seed -> that network's per-epoch rows (sorted by epoch)."""
        out: Dict[str, Dict[int, pd.DataFrame]] = {}
        for (key, seed), g in self.rows.groupby(["key", "seed"], sort=False):
            out.setdefault(key, {})[int(seed)] = g.sort_values("epoch").reset_index(drop=True)
        return out


def _machine() -> Dict[str, Any]:
    import torch

    # the CPU model too: oneDNN and MKL choose their kernels (and float32 sum orders) by it, so a
    # table retrains bit for bit only where torch's own arithmetic is the same (tests/test_tables.py)
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": _cpu_model()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def table_rows(run_dir: Path) -> pd.DataFrame:
    rows = []
    for rec in read_records(run_dir).values():
        if rec.get("status") != COMPLETE or not rec.get("history"):
            continue
        arch = arch_from_dict(rec["arch"])
        base = {"key": rec["key"], "summary": arch.summary(), "arch": arch.canonical().to_json()}
        for i, s in enumerate(arch.canonical().stages, start=1):
            base.update({f"stage{i}_form": s.form, f"stage{i}_heads": s.heads, f"stage{i}_reduction": s.reduction})
        base.update(flops=rec["flops"], params=rec["params"])
        if rec.get("latency"):  # measured by the search (latency as an objective)
            base.update({f"latency_{k}": rec["latency"][k] for k in LATENCY_COLUMNS})
        for h in rec["history"]:
            seeds = h.get("seeds") or [None]
            for j, seed in enumerate(seeds):
                def pick(many, one):
                    values = h.get(many)
                    return values[j] if values else h[one]
                rows.append(dict(base, seed=seed, epoch=h["epoch"], val_accuracy=pick("val_accuracies", "val_accuracy"),
                                 val_loss=pick("val_losses", "val_loss"), train_loss=pick("train_losses", "train_loss"),
                                 seconds=pick("seconds_per_seed", "seconds")))
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["key", "seed", "epoch"]).reset_index(drop=True)
    return df


def export_table(run_dir, out_path=None, command: Optional[str] = None) -> Path:
    """Write the run's table (CSV with a ``#`` provenance header); returns its path."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    space = SearchSpace.from_file(run_dir / "space.yaml", check_paths=False)
    df = table_rows(run_dir)
    if df.empty:
        raise ConfigError(f"run={str(run_dir)!r}: no complete trial to tabulate")
    if "seed" in df and df["seed"].isna().any():
        raise ConfigError(f"run={str(run_dir)!r}: records without per-seed results (an older mrla-nas); "
                          "build the table again")
    networks = df["key"].nunique()
    provenance = {"space": space.to_dict(), "recipe": dict(space.proxy), "seeds": sorted(df["seed"].unique().tolist()),
                  "networks": networks, "space_size": space.size(), "complete": networks == space.size(),
                  "versions": versions(), "date": time.strftime("%Y-%m-%d %H:%M:%S%z"), "machine": _machine(),
                  "run": str(run_dir), "command": command}
    if "latency_ratio" in df:  # how and where the latencies were measured
        from .run import load_run
        provenance["latency"] = dict(space.latency, device=load_run(run_dir).latency_device)
    out = Path(out_path or run_dir / "table.csv")
    with open(out, "w") as f:
        f.write("# mrla-nas tabular benchmark: one row per (network, seed, epoch); provenance below (JSON)\n")
        f.write("# " + json.dumps(provenance, sort_keys=True, default=str) + "\n")
        df.to_csv(f, index=False)
    return out


def load_table(path) -> BenchmarkTable:
    path = Path(path)
    with open(path) as f:
        first, second = f.readline(), f.readline()
    if not first.startswith("# mrla-nas tabular benchmark") or not second.startswith("# "):
        raise ConfigError(f"{path}: not an mrla-nas table (no provenance header)")
    provenance = json.loads(second[2:])
    rows = pd.read_csv(path, comment="#")
    return BenchmarkTable(rows, provenance)


def row_for(table: BenchmarkTable, key: str, seed: int) -> Tuple[ArchConfig, pd.DataFrame]:
    """A network's config (from the table's ``arch`` column) and its per-epoch rows for ``seed``."""
    curve = table.curves()[key][seed]
    arch = arch_from_dict(json.loads(curve.at[0, "arch"]))
    if arch.key() != key:
        raise ConfigError(f"row_for: the table's arch column builds {arch.key()}, not {key}")
    return arch, curve
