"""Samplers measured on the default space's table by replay: normalised hypervolume after N distinct
networks (N = 5..60), 100 repeats each, mean and 95% interval; distinct networks and simulated time
until the table's most accurate network is found.

    python experiments/bench_samplers.py --table experiments/tables/fmnist_resnet20_default.csv \\
        --repeats 100 --out experiments/results/samplers.json

GP is left out unless asked for (`--gp-repeats 3`): Optuna's GPSampler takes ~10 s per ask on the
space's nine categorical parameters on one core, so one 60-network repeat takes over 10 minutes.

Each repeat r is a search with sampler seed r that sees the results of table seed r mod 2 (one
seed's noise, as a single-seed search would); its front is scored with the networks' mean accuracy
over both table seeds (less noise: closer to how good the found networks are). The space's own
settings otherwise (2 trials at a time, the three reference placements first).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrla_nas.analysis.replay import replay  # noqa: E402
from mrla_nas.analysis.benchmark_table import load_table  # noqa: E402

N_MAX = 60


def samplers():
    """name -> factory(seed): Optuna's samplers with the settings worth comparing."""
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    return {
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
        "tpe": lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=6),
        "tpe_multivariate": lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=6, multivariate=True,
                                                                 group=True),
        "tpe_startup10": lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=10, multivariate=True,
                                                              group=True),
        "tpe_mv_startup3": lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=3, multivariate=True,
                                                                group=True),
        "tpe_mv_liar": lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=6, multivariate=True,
                                                            group=True, constant_liar=True),
        "nsga2": lambda s: optuna.samplers.NSGAIISampler(seed=s, population_size=10),
        "gp": lambda s: optuna.samplers.GPSampler(seed=s, n_startup_trials=6, warn_independent_sampling=False),
    }


def _rel(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", default=str(ROOT / "experiments" / "tables" / "fmnist_resnet20_default.csv"))
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--only", nargs="*", help="sampler names to run")
    ap.add_argument("--gp-repeats", type=int, default=0, help="GP asks take ~10 s each: 0 leaves it out")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "samplers.json"))
    args = ap.parse_args()
    table = load_table(args.table)
    space = table.space
    truth = table.final_accuracy()
    best_key = max(truth, key=truth.get)
    seeds = table.seeds()
    doc = json.loads(Path(args.out).read_text()) if Path(args.out).exists() and args.only else {}
    doc.update({"command": (f"python experiments/bench_samplers.py --repeats {args.repeats} --table {_rel(args.table)}"
                            f" --out {_rel(args.out)}" + (f" --only {' '.join(args.only)}" if args.only else "")),
                "table": _rel(args.table), "repeats": args.repeats, "n_max": N_MAX,
                "date": time.strftime("%Y-%m-%d"), "space_size": space.size(),
                "results": doc.get("results", {})})
    for name, factory in samplers().items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        curves, to_best, time_to_best = [], [], []
        repeats = min(args.repeats, args.gp_repeats) if name == "gp" else args.repeats
        if repeats == 0:
            continue
        for r in range(repeats):
            result = replay(table, trials=N_MAX, seed=r, seeds=[seeds[r % len(seeds)]], sampler_obj=factory(r))
            curve = result.hypervolume_curve(scored_by=truth)
            curves.append(curve + [curve[-1]] * (N_MAX - len(curve)))
            keys = result.keys()
            found = keys.index(best_key) + 1 if best_key in keys else None
            to_best.append(found)
            time_to_best.append(result.trials[found - 1].end if found else None)
        m = np.array(curves)
        mean, sd = m.mean(0), m.std(0, ddof=1)
        half = 1.96 * sd / np.sqrt(len(m))
        found = [x for x in to_best if x is not None]
        doc["results"][name] = {
            "hv_mean": mean.tolist(), "hv_low": (mean - half).tolist(), "hv_high": (mean + half).tolist(),
            "best_found_fraction": len(found) / len(to_best),
            "networks_to_best_median": float(np.median(found)) if found else None,
            "seconds_to_best_median": float(np.median([t for t in time_to_best if t is not None])) if found else None,
            "repeats": repeats, "replay_seconds": time.perf_counter() - t0}
        print(f"{name:18s} HV@20 {mean[19]:.4f} HV@40 {mean[39]:.4f} HV@60 {mean[59]:.4f}  best found "
              f"{len(found)}/{len(to_best)} (median {doc['results'][name]['networks_to_best_median']})  "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    plot(doc, Path(args.out).with_suffix(".png"))


def plot(doc: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    n = np.arange(1, doc["n_max"] + 1)
    for name, r in doc["results"].items():
        ax.plot(n, r["hv_mean"], label=f"{name} ({r['repeats']} repeats)")
        ax.fill_between(n, r["hv_low"], r["hv_high"], alpha=0.2)
    ax.set_ylim(min(r["hv_low"][4] for r in doc["results"].values()) - 0.0005,
                max(r["hv_high"][-1] for r in doc["results"].values()) + 0.0005)
    if "random" in doc["results"]:  # the goal's line: random search's hypervolume after 40 networks
        ax.axhline(doc["results"]["random"]["hv_mean"][39], color="grey", ls=":", lw=1)
    ax.set_xlabel("distinct networks evaluated")
    ax.set_ylabel("normalised hypervolume (mean accuracy over table seeds)")
    ax.set_xlim(5, doc["n_max"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"samplers on {doc['table']} by replay: mean and 95% interval", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plot"]:  # redraw the figure of a recorded JSON
        plot(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[2]).with_suffix(".png"))
    else:
        main()
