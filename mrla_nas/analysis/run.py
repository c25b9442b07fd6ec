"""A run directory read back: its frozen space, trials table, Pareto front, hypervolume and knee."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import pandas as pd

from ..objectives.pareto import pareto
from ..rundir.files import check_run_dir
from ..rundir.trials_table import trials_table
from ..space import REFERENCE_PLACEMENTS, SearchSpace

REFERENCE_LABELS = {"none": "no MRLA", "light": "light everywhere", "base": "base everywhere"}


@dataclass
class Run:
    """A run directory read back: ``trials`` (DataFrame), ``front`` (DataFrame, sorted by FLOPs),
    ``hypervolume`` with its ``reference`` point (accuracy, FLOPs), and the ``knee`` trial id."""

    path: Path
    space: SearchSpace
    trials: pd.DataFrame
    front: pd.DataFrame
    hypervolume: float
    reference: Tuple[float, ...]
    knee: Optional[int]

    def reference_rows(self) -> dict:
        """Trials that measured a reference placement (no MRLA, light everywhere, base everywhere)."""
        bb = self.space.backbone_combos()[0]
        out = {}
        if self.trials.empty or "key" not in self.trials or "accuracy" not in self.trials:
            return out
        for p in REFERENCE_PLACEMENTS:
            key = self.space.reference_config(p, bb).key()
            rows = self.trials[(self.trials["key"] == key) & self.trials["accuracy"].notna()]
            if len(rows):
                out[p] = rows.iloc[0]
        return out


def load_run(path) -> Run:
    """Trials and Pareto front of a run directory, for notebooks.

    Example (on a run directory, e.g. the demo's)::

        run = load_run("runs/demo")
        run.front[["trial_id", "summary", "accuracy", "flops"]]
    """
    path = Path(path)
    check_run_dir(path)
    space = SearchSpace.from_file(path / "space.yaml", check_paths=False)
    df = trials_table(path)
    front, hv, ref, knee = pareto(df, space.objectives, space.constraints)
    knee_id = int(df.loc[knee, "trial_id"]) if knee is not None else None
    return Run(path, space, df, front, hv, ref, knee_id)
