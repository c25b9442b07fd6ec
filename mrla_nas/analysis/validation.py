"""``mrla-nas validate RUN``: retrain a run's chosen networks at a higher fidelity and say how far
the proxy's answer holds.

The chosen set (default: the front, the knee and the reference placements no MRLA / light
everywhere / base everywhere) is retrained with a longer recipe as a run of its own under
``RUN/<name>/`` (default ``RUN/validate``) on the same Ray machinery, so it resumes like a search.
The report gives, per network, the validated accuracy (mean ± sd over seeds, 95% t-interval);
Kendall's tau and Spearman's rho between proxy and validated accuracy with bootstrap intervals;
whether the knee stays non-dominated; and which front members are dominated once seed noise is
taken into account (another network as cheap on every cost and better by more than the 95%
Welch interval of the difference).

Example (on a finished run; `tests/test_validate.py` runs it on a tiny one)::

    report = validate("runs/demo", epochs=8, train_size=12000, seeds=3)
    print(report.text())
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..arch import ArchConfig, arch_from_dict
from ..errors import ConfigError
from ..objectives.pareto import non_dominated
from ..rundir.files import read_records
from ..rundir.records import COMPLETE
from ..space import REFERENCE_PLACEMENTS, SearchSpace
from ..space.recipe import recipe_label
from ..space.schema import check_run_name
from ..yaml_io import load_yaml_file
from .run import REFERENCE_LABELS, Run, load_run

RECIPE_KEYS = ("epochs", "train_size", "val_size", "val_split", "seeds", "lr", "batch_size", "optimizer",
               "momentum", "weight_decay", "augmentation", "resolution",
               "device", "precision", "channels_last", "compile", "workers")  # where it trains


@dataclass
class Correlation:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def t_interval(values: Sequence[float], level: float = 0.95):
    """(mean, sd, low, high): the mean's two-sided t-interval (sd 0 and no width for one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, 0.0, mean, mean
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return mean, sd, mean - half, mean + half


def rank_correlations(x: Sequence[float], y: Sequence[float], resamples: int = 2000, seed: int = 0):
    """Kendall's tau-b and Spearman's rho of ``x`` against ``y`` with 95% percentile-bootstrap
    intervals (pairs resampled; NaN when fewer than 3 pairs or no variation)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = []
    for fn in (stats.kendalltau, stats.spearmanr):
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(Correlation(math.nan, math.nan, math.nan))
            continue
        value = float(fn(x, y)[0])
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(resamples):
            idx = rng.integers(0, len(x), len(x))
            if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
                boots.append(float(fn(x[idx], y[idx])[0]))
        low, high = np.percentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan)
        out.append(Correlation(value, float(low), float(high)))
    return out[0], out[1]


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Tuple[float, float, float]:
    """(mean_a - mean_b, low, high): the Welch ``level`` t-interval of the difference of two groups'
    means, each given as (mean, sd, n) with sd over the n seeds (ddof 1)."""
    from scipy import stats

    (ma, sa, na), (mb, sb, nb) = a, b
    va, vb = sa ** 2 / na, sb ** 2 / nb
    se, diff = math.sqrt(va + vb), ma - mb
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / ((va ** 2 / max(na - 1, 1)) + (vb ** 2 / max(nb - 1, 1)))  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return diff, diff - half, diff + half


def noise_dominated(table: pd.DataFrame, costs: Sequence[str], level: float = 0.95) -> Dict[int, int]:
    """Rows dominated beyond seed noise: for row i, a row j no dearer on every cost and more accurate
    (``val_mean``) by more than the Welch ``level`` interval of the difference (``val_sd``, ``val_n``).
    Returns {i: j} in row positions."""
    out = {}
    mean, sd, n = (table[c].to_numpy(float) for c in ("val_mean", "val_sd", "val_n"))
    cost = table[list(costs)].to_numpy(float)
    for i in range(len(table)):
        for j in range(len(table)):
            if i == j or (cost[j] > cost[i]).any():
                continue
            if welch_interval((mean[j], sd[j], n[j]), (mean[i], sd[i], n[i]), level)[1] > 0:
                out[i] = j
                break
    return out


def chosen_networks(run: Run, trials: Optional[List[int]] = None) -> List[Dict[str, Any]]:
    """The networks to validate: given trial ids, or the front, the knee and the reference placements
    (those of the space's first backbone choice; measured by the run or not)."""
    records = read_records(run.path)
    out: Dict[str, Dict[str, Any]] = {}

    def add(arch: ArchConfig, role: str, trial: Optional[int]):
        entry = out.setdefault(arch.key(), {"arch": arch.canonical(), "roles": [], "trial_id": trial})
        entry["roles"].append(role)
        if entry["trial_id"] is None:
            entry["trial_id"] = trial

    if trials:
        for t in trials:
            if t not in records or not records[t].get("arch"):
                raise ConfigError(f"--trials: trial {t} is not in {run.path}")
            add(arch_from_dict(records[t]["arch"]), "chosen", t)
        return list(out.values())
    for _, row in run.front.iterrows():
        add(arch_from_dict(records[int(row["trial_id"])]["arch"]),
            "knee" if int(row["trial_id"]) == run.knee else "front", int(row["trial_id"]))
    measured = run.reference_rows()
    bb = run.space.backbone_combos()[0]
    for placement in REFERENCE_PLACEMENTS:
        arch = run.space.reference_config(placement, bb)
        if run.space.contains(arch):
            row = measured.get(placement)
            add(arch, REFERENCE_LABELS[placement], int(row["trial_id"]) if row is not None else None)
    return list(out.values())


def validation_space(space: SearchSpace, n: int, recipe: Dict[str, Any],
                     gpus_per_trial: Optional[float] = None) -> SearchSpace:
    """The run's space with the validation recipe, a budget of exactly the chosen networks."""
    data = space.to_dict()
    data["proxy"] = dict(data["proxy"], **recipe)
    data["search"] = dict(data["search"], trials=n, initial=[], sampler="random", scheduler="none")
    if gpus_per_trial is not None:
        data["search"]["gpus_per_trial"] = gpus_per_trial
    return SearchSpace.from_dict(data)


def read_recipe(path) -> Dict[str, Any]:
    """A recipe file: a YAML mapping of proxy keys (epochs, train_size, seeds, ...)."""
    data = load_yaml_file(path, "recipe file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of proxy settings ({', '.join(RECIPE_KEYS)})")
    for k in data:
        if k not in RECIPE_KEYS:
            raise ConfigError(f"{path}: {k}: not a recipe key; allowed: {', '.join(RECIPE_KEYS)}")
    return data


@dataclass
class ValidationReport:
    run: Run
    table: pd.DataFrame          # one row per network: roles, costs, proxy and validated accuracy
    kendall: Correlation
    spearman: Correlation
    knee_non_dominated: Optional[bool]
    dominated: Dict[int, str]    # front trial -> the network that dominates it beyond noise
    recipe: Dict[str, Any]
    out_dir: Path

    def verdict(self) -> str:
        if math.isnan(self.kendall.value):
            return "too few networks with both accuracies to rank"
        if self.kendall.low > 0:
            return (f"the proxy ranks these networks like the validation recipe (Kendall tau {self.kendall}; "
                    "its interval excludes 0)")
        return (f"the proxy does NOT reliably rank these networks like the validation recipe (Kendall tau "
                f"{self.kendall}: the interval includes 0); read the front as how fast networks learn under "
                "the proxy, not how good they become")

    def text(self) -> str:
        t = self.table
        lines = [f"validated {len(t)} networks of {self.run.path} with {self._recipe_label()} -> {self.out_dir}",
                 f"{'trial':>5s}  {'arch':22s} {'role':22s} {'proxy acc':>16s} {'validated acc (95% CI)':>30s} "
                 f"{'FLOPs':>12s}"]
        for r in t.itertuples(index=False):
            proxy = "not measured" if pd.isna(r.proxy_mean) else f"{r.proxy_mean:.4f} ± {r.proxy_sd:.4f}"
            val = f"{r.val_mean:.4f} ± {r.val_sd:.4f} [{r.val_low:.4f}, {r.val_high:.4f}]"
            tid = "-" if pd.isna(r.trial_id) else f"{int(r.trial_id)}"
            lines.append(f"{tid:>5s}  {r.summary:22s} {r.roles:22s} {proxy:>16s} {val:>30s} {int(r.flops):12,d}")
        lines.append(f"rank agreement, proxy vs validated ({int(t['proxy_mean'].notna().sum())} networks): "
                     f"Kendall tau {self.kendall}, Spearman rho {self.spearman}")
        if self.knee_non_dominated is not None:
            lines.append("the knee stays non-dominated" if self.knee_non_dominated
                         else "the knee is dominated at the validated accuracies")
        if self.dominated:
            lines.append("front members dominated beyond seed noise: " + "; ".join(
                f"trial {a} (by {b})" for a, b in sorted(self.dominated.items())))
        else:
            lines.append("no front member is dominated beyond seed noise")
        lines.append("verdict: " + self.verdict())
        return "\n".join(lines)

    def _recipe_label(self) -> str:
        r = self.recipe
        return f"{recipe_label(r)}, validation {r['val_size']:,} images of the {r['val_split']} split"


def validate(run_path, epochs: Optional[int] = None, train_size: Optional[int] = None,
             seeds: Optional[int] = None, val_size: Optional[int] = None, val_split: Optional[str] = None,
             recipe_file=None, trials: Optional[List[int]] = None, name: str = "validate",
             address: Optional[str] = None, progress: bool = True, device: Optional[str] = None,
             gpus_per_trial: Optional[float] = None, precision: Optional[str] = None) -> ValidationReport:
    """Retrain the chosen networks of ``run_path`` at a higher fidelity (resumable) and compare.

    ``device``, ``gpus_per_trial``, ``precision``: where the validation trains (default: as the
    search did; ``device='cuda'`` alone asks one GPU per trial)."""
    from ..search import search

    check_run_name(name, "--name")  # the validation's folder inside the run, never the run or outside it
    run = load_run(run_path)
    base = dict(run.space.proxy)
    recipe = {"epochs": 4 * base["epochs"], "seeds": max(3, int(base.get("seeds", 1)))}
    if recipe_file is not None:
        recipe.update(read_recipe(recipe_file))
    given = dict(epochs=epochs, train_size=train_size, seeds=seeds, val_size=val_size, val_split=val_split,
                 device=device, precision=precision)
    recipe.update({k: v for k, v in given.items() if v is not None})
    if gpus_per_trial is None and recipe.get("device") == "cuda" and not run.space.search["gpus_per_trial"]:
        gpus_per_trial = 1
    if gpus_per_trial is None and recipe.get("device") == "cpu":
        gpus_per_trial = 0
    chosen = chosen_networks(run, trials)
    if not chosen:
        raise ConfigError(f"run={str(run.path)!r}: no network to validate (no front yet, no reference placement)")
    space = validation_space(run.space, len(chosen), recipe, gpus_per_trial)
    out_dir = run.path / name
    result = search(space, name=name, runs_dir=run.path, resume=(out_dir / "study.journal").exists(),
                    address=address, progress=progress, enqueue=[c["arch"] for c in chosen])
    report = _compare(run, chosen, result.run_dir, space)
    report.table.to_csv(result.run_dir / "validate.csv", index=False)
    plot_validation(report, result.run_dir / "validate.png")
    return report


def _compare(run: Run, chosen: List[Dict[str, Any]], out_dir: Path, space: SearchSpace) -> ValidationReport:
    validated = {r["key"]: r for r in read_records(out_dir).values() if r.get("status") == COMPLETE}
    proxy_records = read_records(run.path)
    rows = []
    for c in chosen:
        key = c["arch"].key()
        rec = validated.get(key)
        if rec is None:
            raise ConfigError(f"{out_dir}: {c['arch'].summary()} has no finished validation trial; run validate again")
        accs = rec["history"][-1].get("val_accuracies") or [rec["history"][-1]["val_accuracy"]]
        mean, sd, low, high = t_interval(accs)
        prow = proxy_records.get(c["trial_id"]) if c["trial_id"] is not None else None
        p_last = prow["history"][-1] if prow and prow.get("status") == COMPLETE and prow.get("history") else None
        rows.append({"trial_id": c["trial_id"], "key": key, "summary": c["arch"].summary(),
                     "roles": "+".join(c["roles"]), "flops": rec["flops"], "params": rec["params"],
                     # the latency objective's value (ratio or ms), as the validation run measured it
                     "latency": rec.get("latency_value", math.nan),
                     "proxy_mean": p_last["val_accuracy"] if p_last else math.nan,
                     "proxy_sd": p_last.get("val_accuracy_sd", 0.0) if p_last else math.nan,
                     "val_mean": mean, "val_sd": sd, "val_low": low, "val_high": high, "val_n": len(accs),
                     "val_accuracies": accs})
    table = pd.DataFrame(rows)
    both = table[table["proxy_mean"].notna()]
    kendall, spearman = rank_correlations(both["proxy_mean"], both["val_mean"])
    costs = [k for k in run.space.objective_names() if k != "accuracy"]
    knee_ok = None
    if run.knee is not None and (table["trial_id"] == run.knee).any():
        mask = non_dominated(table[["val_mean", *costs]].to_numpy(float), ["max"] + ["min"] * len(costs))
        knee_ok = bool(mask[int(np.flatnonzero(table["trial_id"].to_numpy() == run.knee)[0])])
    front_positions = set(np.flatnonzero(table["roles"].str.contains("front|knee").to_numpy()))
    dominated = {int(table.at[i, "trial_id"]): table.at[j, "summary"] + f" ({table.at[j, 'roles']})"
                 for i, j in noise_dominated(table, costs).items() if i in front_positions}
    recipe = {k: space.proxy[k] for k in ("dataset", "epochs", "train_size", "resolution", "val_size", "val_split",
                                          "seeds")}
    return ValidationReport(run, table, kendall, spearman, knee_ok, dominated, recipe, out_dir)


def plot_validation(report: ValidationReport, out_path) -> Path:
    """Proxy accuracy against validated accuracy: error bars (sd), the diagonal, labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = report.table[report.table["proxy_mean"].notna()]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    if len(t):
        ax.errorbar(t["proxy_mean"], t["val_mean"], xerr=t["proxy_sd"].fillna(0), yerr=t["val_sd"], fmt="o",
                    capsize=3)
        for r in t.itertuples(index=False):
            ax.annotate(f"{r.summary.split()[-1]} ({r.roles})", (r.proxy_mean, r.val_mean), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        lo = float(min(t["proxy_mean"].min(), t["val_mean"].min()))
        hi = float(max(t["proxy_mean"].max(), t["val_mean"].max()))
        pad = (hi - lo) * 0.05 + 1e-3
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="grey", lw=1, label="proxy = validated")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("proxy accuracy (mean ± sd over seeds)")
    ax.set_ylabel("validated accuracy (mean ± sd over seeds)")
    ax.set_title(f"Kendall tau {report.kendall}, Spearman rho {report.spearman}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
