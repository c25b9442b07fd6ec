"""A run directory read back: its frozen space, trials table, Pareto front, hypervolume and knee."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional, Tuple

import pandas as pd

from ..objectives.pareto import pareto
from ..errors import ConfigError
from ..rundir.files import check_run_dir
from ..rundir.manifest import read_manifest
from ..rundir.trials_table import trials_table
from ..space import REFERENCE_PLACEMENTS, SearchSpace
from ..space.recipe import recipe_label

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

    @property
    def recipe(self) -> str:
        """The proxy recipe its accuracies were measured under (:func:`~mrla_nas.space.recipe.recipe_label`)."""
        return recipe_label(self.space.proxy)

    @cached_property
    def validation(self) -> Optional["Validation"]:
        """The newest ``mrla-nas validate`` of this run (its ``validate.csv``), or None where none ran;
        read once per Run (the front table, the plot and explain all show it)."""
        # a validation is a run of its own: its recipe is its frozen space (a folder without one is not)
        found = sorted((p for p in self.path.glob("*/validate.csv") if (p.parent / "space.yaml").is_file()),
                       key=lambda p: p.stat().st_mtime)
        if not found:
            return None
        folder = found[-1].parent
        table = pd.read_csv(found[-1])
        space = SearchSpace.from_file(folder / "space.yaml", check_paths=False)
        return Validation(folder, table, recipe_label(space.proxy))

    @cached_property
    def latency_device(self) -> Optional[str]:
        """Where the run's latencies were measured (its manifest's sessions), or None."""
        try:
            sessions = (read_manifest(self.path) or {}).get("sessions", [])
        except ConfigError:  # a damaged manifest: the front is still the trials', only the device is unknown
            return None
        found = sorted({s["latency_device"] for s in sessions if isinstance(s, dict) and s.get("latency_device")})
        return ", ".join(found) or None

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


@dataclass
class Validation:
    """A validation of a run read back: ``table`` (validate.csv: per network ``trial_id``, ``summary``,
    ``roles``, proxy and validated accuracy with its 95% interval) and the ``recipe`` it retrained with."""

    path: Path
    table: pd.DataFrame
    recipe: str

    def by_trial(self) -> dict:
        """Validated rows of the networks that are trials of the run, by trial id."""
        rows = self.table[self.table["trial_id"].notna()]
        return {int(r["trial_id"]): r for _, r in rows.iterrows()}

    def reference_gains(self) -> dict:
        """Light and base everywhere against no MRLA, validated: {form: (gain, sd of the gain)}."""
        ref = {role: r for _, r in self.table.iterrows() for role in str(r["roles"]).split("+")}
        none = ref.get(REFERENCE_LABELS["none"])
        out = {}
        for form in ("light", "base"):
            if none is not None and REFERENCE_LABELS[form] in ref:
                r = ref[REFERENCE_LABELS[form]]
                out[form] = (float(r["val_mean"] - none["val_mean"]),
                             float((r["val_sd"] ** 2 / r["val_n"] + none["val_sd"] ** 2 / none["val_n"]) ** 0.5))
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
