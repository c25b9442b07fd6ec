"""``mrla-nas explain RUN``: what a run says about *where* MRLA pays off.

Per stage and form, the effect on accuracy of that form against no MRLA in that stage, the other
stages (and, in a space with several, the backbone choice) held fixed: the coefficients of an
additive least-squares model of accuracy on one indicator per (stage, form) and per backbone,
fitted to the run's finished networks, with 95% intervals from a bootstrap over networks. An effect
the networks cannot separate from the others is reported as such, not as the number least squares
would pick. The same model on FLOPs gives each choice's cost (exact on one backbone: FLOPs are
additive over stages), as a share of the network without MRLA. Optuna's own importance evaluators (fANOVA, PED-ANOVA) rank
the sampled parameters for accuracy and for FLOPs.

Example (on a finished run, e.g. the demo's)::

    e = explain("runs/demo")
    print(e.text())
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..objectives.pareto import front_candidates
from ..rundir.study import open_study
from .run import Run, load_run

FORM_NAMES = {"light": "MRLA-light", "base": "MRLA-base"}


def additive_effects(table: pd.DataFrame, n_stages: int, target: str, resamples: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Least-squares effects of each (stage, form) against 'none' on ``target``, with 95% bootstrap
    intervals over rows. Columns: stage, form, effect, low, high, n_with (rows with it), n_none.

    >>> t = pd.DataFrame({"stage1_form": ["none", "light", "none", "light"],
    ...                   "stage2_form": ["none", "none", "base", "base"], "y": [1.0, 3.0, 2.0, 4.0]})
    >>> additive_effects(t, 2, "y", resamples=0)[["stage", "form", "effect"]].round(6).values.tolist()
    [[1, 'light', 2.0], [2, 'base', 1.0]]
    """
    columns = [(i, f) for i in range(1, n_stages + 1) for f in ("light", "base")
               if (table[f"stage{i}_form"] == f).any()]
    y = table[target].to_numpy(float)
    # a space with several backbone choices (depths, widths...): one more term per backbone beyond the
    # first, so that MRLA is compared within a backbone, not across a difference of depth or width
    backbones = list(dict.fromkeys(table["backbone"])) if "backbone" in table else []
    X = np.column_stack([np.ones(len(table))] + [(table[f"stage{i}_form"] == f).to_numpy(float)
                                                 for i, f in columns]
                        + [(table["backbone"] == b).to_numpy(float) for b in backbones[1:]])
    beta = _fit(X, y)
    # an effect the networks cannot tell apart from others (say light in stage 1 only ever with light in
    # stage 2, or only on one backbone): least squares would still return a number for it
    rank = np.linalg.matrix_rank(X)
    identifiable = [np.linalg.matrix_rank(np.vstack([X, np.eye(X.shape[1])[k]])) == rank
                    for k in range(X.shape[1])]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        if np.linalg.matrix_rank(X[idx]) == X.shape[1]:  # a resample without some choice says nothing of it
            boots.append(_fit(X[idx], y[idx]))
    boots = np.array(boots)
    # with fewer than 3 networks beyond the effects' count the fit is (nearly) exact and a bootstrap
    # interval would look certain where nothing is known: no interval then
    estimable = len(y) - X.shape[1] >= 3 and len(boots) >= 20
    rows = []
    for k, (i, f) in enumerate(columns, start=1):
        low, high = np.percentile(boots[:, k], [2.5, 97.5]) if estimable else (math.nan, math.nan)
        effect = float(beta[k]) if identifiable[k] else math.nan
        rows.append({"stage": i, "form": f, "effect": effect, "low": float(low), "high": float(high),
                     "n_with": int((table[f"stage{i}_form"] == f).sum()),
                     "n_none": int((table[f"stage{i}_form"] == "none").sum())})
    out = pd.DataFrame(rows, columns=["stage", "form", "effect", "low", "high", "n_with", "n_none"])
    out.attrs["intercept"] = float(beta[0])  # no MRLA, the first backbone
    out.attrs["backbones"] = max(1, len(backbones))
    return out


def _fit(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(X, y, rcond=None)[0]


def importances(study, names: List[str]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Optuna's fANOVA and PED-ANOVA importances per objective ({objective: {evaluator: {param: v}}});
    an evaluator that cannot run on this study is reported by its reason."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    for k, name in enumerate(names):
        out[name] = {}
        for label, evaluator in (("fANOVA", FanovaImportanceEvaluator(seed=0)),
                                 ("PED-ANOVA", PedAnovaImportanceEvaluator())):
            try:
                if len(complete) < 2:
                    raise ValueError(f"{len(complete)} complete trials")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # experimental-API notices
                    # PED-ANOVA ranks what reaches *low* target values (Optuna's docs): a
                    # maximised objective is negated for it; fANOVA's variance split has no side
                    sign = -1.0 if (label == "PED-ANOVA"
                                    and study.directions[k] == optuna.study.StudyDirection.MAXIMIZE) else 1.0
                    values = optuna.importance.get_param_importances(
                        study, evaluator=evaluator, target=lambda t, k=k, sign=sign: sign * t.values[k])
                out[name][label] = {p: float(v) for p, v in values.items()}
            except Exception as e:  # e.g. no parameter varies across the complete trials
                out[name][label] = {"n/a": str(e).splitlines()[0][:120] if str(e) else type(e).__name__}
    return out


@dataclass
class Explanation:
    run: Run
    accuracy: pd.DataFrame             # additive effects on accuracy
    flops: pd.DataFrame                # additive effects on FLOPs (absolute)
    networks: int
    importance: Dict[str, Dict[str, Dict[str, float]]] = field(default_factory=dict)
    latency: Optional[pd.DataFrame] = None  # additive effects on the measured latency ratio, where measured

    def table(self) -> pd.DataFrame:
        """One row per (stage, form): accuracy effect with its interval, FLOPs effect absolute and in %."""
        t = self.accuracy.copy()
        f = self.flops.set_index(["stage", "form"])["effect"]
        base = self.flops.attrs.get("intercept", math.nan)
        t["flops"] = [f.get((r.stage, r.form), math.nan) for r in t.itertuples()]
        t["flops_pct"] = 100 * t["flops"] / base if base else math.nan
        if self.latency is not None:  # what the same choice costs in measured time, beside its FLOPs
            ms = self.latency.set_index(["stage", "form"])["effect"]
            base_ms = self.latency.attrs.get("intercept", math.nan)
            t["latency_ratio"] = [ms.get((r.stage, r.form), math.nan) for r in t.itertuples()]
            t["latency_pct"] = 100 * t["latency_ratio"] / base_ms if base_ms else math.nan
        return t

    def _cost(self, r) -> str:
        """``+2.53% FLOPs`` or, where latency was measured, ``+2.53% FLOPs, +18.1% latency``."""
        text = f"{r.flops_pct:+.2f}% FLOPs"
        if self.latency is not None and not math.isnan(getattr(r, "latency_pct", math.nan)):
            text += f", {r.latency_pct:+.1f}% latency"
        return text

    def sentences(self) -> List[str]:
        """One line per stage: what MRLA in it did to accuracy, and what it cost."""
        out = []
        t = self.table()
        for stage in range(1, len(self.run.space.stages) + 1):
            rows = t[t["stage"] == stage]
            if rows.empty:
                out.append(f"stage {stage}: no MRLA was measured there")
                continue
            parts = []
            for r in rows.itertuples():
                if math.isnan(r.effect):
                    parts.append(f"{FORM_NAMES[r.form]}: these networks cannot tell its effect apart from other "
                                 f"choices' ({r.n_with} networks with it, {r.n_none} without)")
                    continue
                ci = " [interval needs more networks]" if math.isnan(r.low) else f" [{r.low:+.3f}, {r.high:+.3f}]"
                parts.append(f"{FORM_NAMES[r.form]} {r.effect:+.3f}{ci} accuracy for {self._cost(r)} "
                             f"({r.n_with} networks with it, {r.n_none} without)")
            out.append(f"MRLA in stage {stage}: " + "; ".join(parts))
        return out

    def text(self) -> str:
        backbones = self.accuracy.attrs.get("backbones", 1)
        held = "other stages held fixed" if backbones == 1 else (
            f"other stages and the backbone held fixed ({backbones} backbones; FLOPs shares of the first's network "
            "without MRLA)")
        lines = [f"where MRLA pays off in {self.run.path} ({self.networks} finished networks; proxy accuracy effects "
                 f"against no MRLA in that stage after {self.run.recipe}, {held}; 95% bootstrap intervals):"]
        lines += ["  " + s for s in self.sentences()]
        validation = self.run.validation
        if validation is not None:
            gains = validation.reference_gains()
            shown = "; ".join(f"{FORM_NAMES[f]} everywhere {g:+.3f} ± {sd:.3f}" for f, (g, sd) in gains.items())
            lines.append(f"  validated with {validation.recipe} ({validation.path.name}/), against no MRLA: "
                         + (shown or "the reference placements were not validated"))
        else:
            lines.append("  proxy effects are how much faster a network learns under the proxy, not what it gains when "
                         "trained: `mrla-nas validate RUN` retrains the front and the reference placements longer")
        for name, evaluators in self.importance.items():
            for label, values in evaluators.items():
                shown = ", ".join(f"{p} {v:.2f}" if isinstance(v, float) else f"{p}: {v}"
                                  for p, v in list(values.items())[:6])
                lines.append(f"  importance for {name} ({label}): {shown}")
        return "\n".join(lines)


def explain(run_path, resamples: int = 1000, seed: int = 0, with_importance: bool = True) -> Explanation:
    run = load_run(run_path)
    done = front_candidates(run.trials)
    if len(done) < 2:
        raise ConfigError(f"run={str(run.path)!r}: {len(done)} finished networks; explain needs at least 2")
    n = len(run.space.stages)
    acc = additive_effects(done, n, "accuracy", resamples, seed)
    flops = additive_effects(done.assign(flops=done["flops"].astype(float)), n, "flops", 0, seed)
    latency = None
    if "latency_ratio" in done and done["latency_ratio"].notna().all():
        # the ratio to the network without MRLA, timed interleaved with it: free of the drift that
        # separates two networks' milliseconds measured minutes apart
        latency = additive_effects(done.assign(latency_ratio=done["latency_ratio"].astype(float)), n,
                                   "latency_ratio", 0, seed)
    imp = {}
    if with_importance:
        imp = importances(open_study(run.path), run.space.objective_names())
    return Explanation(run, acc, flops, len(done), imp, latency)


def plot_explanation(e: Explanation, out_path) -> Path:
    """A stage x form grid: the accuracy effect (colour, text) with its interval and FLOPs cost."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = e.table()
    stages = list(range(1, len(e.run.space.stages) + 1))
    forms = ["light", "base"]
    grid = np.full((len(stages), len(forms)), np.nan)
    for r in t.itertuples():
        grid[r.stage - 1, forms.index(r.form)] = r.effect
    lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    fig, ax = plt.subplots(figsize=(5.5, 1.2 + 0.9 * len(stages)), dpi=120)
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for r in t.itertuples():
        ci = "" if math.isnan(r.low) else f"\n[{r.low:+.3f}, {r.high:+.3f}]"
        label = ("not told apart\nfrom other choices" if math.isnan(r.effect)
                 else f"{r.effect:+.3f}{ci}\n{e._cost(r)}")
        ax.text(forms.index(r.form), r.stage - 1, label, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(forms)), [FORM_NAMES[f] for f in forms])
    ax.set_yticks(range(len(stages)), [f"stage {s}" for s in stages])
    ax.set_title(f"proxy accuracy effect against no MRLA ({e.networks} networks, 95% intervals)\n"
                 f"proxy: {e.run.recipe}", fontsize=8)
    fig.colorbar(im, ax=ax, label="proxy accuracy effect")
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
