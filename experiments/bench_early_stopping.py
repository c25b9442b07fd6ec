"""Early stopping measured on the 6-epoch table by replay: none / asha / moasha, 100 repeats.

    python experiments/bench_early_stopping.py --repeats 100 --out experiments/results/early_stopping.json

Each repeat r: the default sampler (seed r), the results of table seed r mod 2 (what a single-seed search
sees), 2 trials at a time, the same trial budget for every scheduler. Scored with the networks'
mean full-fidelity accuracy over both seeds:

1. the summed training seconds each scheduler needs to reach 99% of the final hypervolume of the
   same search (same r) without early stopping (inf if it never does within the budget);
2. the hypervolume at equal compute: searches of up to the whole space, cut at fractions of the
   compute the search without stopping spent on its budget.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrla_nas.analysis.replay import replay  # noqa: E402
from mrla_nas.space import SearchSpace  # noqa: E402
from mrla_nas.analysis.benchmark_table import load_table  # noqa: E402

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def compute_to_reach(spent, hv, target):
    hit = np.flatnonzero(hv >= target - 1e-12)
    return float(spent[hit[0]]) if len(hit) else math.inf


def hv_at(spent, hv, budget):
    ok = np.flatnonzero(spent <= budget + 1e-9)
    return float(hv[ok[-1]]) if len(ok) else 0.0


def _rel(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def _mean_curve(curves, points: int = 60):
    """Mean hypervolume against training seconds, on a common grid of compute budgets."""
    top = max(float(s[-1]) for s, _ in curves)
    grid = np.linspace(0, top, points)
    return {"seconds": grid.tolist(), "hv": [float(np.mean([hv_at(s, h, g) for s, h in curves])) for g in grid]}


def plot(doc: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, r in doc["results"].items():
        ax.plot(np.array(r["curve"]["seconds"]) / 60, r["curve"]["hv"], label=name)
    # the first minute (the three reference placements) spans 0 to ~0.44: zoom on what differs after it
    later = [h for r in doc["results"].values() for t, h in zip(r["curve"]["seconds"], r["curve"]["hv"]) if t >= 120]
    if later:
        ax.set_ylim(min(later) - 0.002, max(later) + 0.002)
    ax.set_xlabel("summed proxy training minutes (replayed)")
    ax.set_ylabel("normalised hypervolume (full-fidelity front)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"early stopping on {doc['table']}: mean over {doc['repeats']} repeats", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


_TABLE = None


def _load(path) -> None:
    global _TABLE
    _TABLE = load_table(path)


def one_repeat(r: int, trials: int, configs) -> dict:
    """Repeat r of every scheduler configuration (``none`` first: the others are scored against it)."""
    table = _TABLE
    space = table.space
    truth = table.final_accuracy()
    seeds = table.seeds()
    out, none_final, none_compute = {}, None, None
    for kind, eta, grace in configs:
        data = space.to_dict()
        data["search"] = dict(data["search"], reduction_factor=eta or 2, grace_period=grace, rungs=None)
        sp = SearchSpace.from_dict(data, check_paths=False)
        # the space's own sampler (make_sampler: the measured default), seeded by r
        common = dict(space=sp, seed=r, seeds=[seeds[r % len(seeds)]], scheduler=kind)
        spent, hv = replay(table, trials=trials, **common).compute_curve(scored_by=truth)
        if kind == "none":
            none_final, none_compute = float(hv[-1]), float(spent[-1])
        wide = replay(table, trials=space.size(), **common)  # as far as the whole space goes
        w_spent, w_hv = wide.compute_curve(scored_by=truth)
        out[_name(kind, eta, grace)] = dict(
            reach=compute_to_reach(spent, hv, 0.99 * none_final), final=float(hv[-1]), spent=float(spent[-1]),
            none_compute=none_compute, equal={f: hv_at(w_spent, w_hv, f * none_compute) for f in FRACTIONS},
            curve=(w_spent, w_hv))
    return out


def _name(kind, eta, grace) -> str:
    return kind if eta is None else f"{kind}_eta{eta}" + (f"_grace{grace}" if grace != 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", default=str(ROOT / "experiments" / "tables" / "fmnist_resnet20_early_stopping.csv"))
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--eta", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--grace", type=int, nargs="+", default=[1], help="grace periods (first rung, epochs)")
    ap.add_argument("--workers", type=int, default=2, help="processes, one repeat at a time each")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "early_stopping.json"))
    args = ap.parse_args()
    configs = [("none", None, 1)] + [(kind, eta, g) for g in args.grace for eta in args.eta
                                     for kind in ("asha", "moasha")]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers, initializer=_load, initargs=(args.table,)) as pool:
        runs = pool.starmap(one_repeat, [(r, args.trials, configs) for r in range(args.repeats)])
    results = {}
    for kind, eta, grace in configs:
        name = _name(kind, eta, grace)
        rs = [run[name] for run in runs]
        reach_arr = np.array([x["reach"] for x in rs])
        finite = reach_arr[np.isfinite(reach_arr)]
        ratio = np.array([x["none_compute"] / x["reach"] if math.isfinite(x["reach"]) else 0.0 for x in rs])
        equal = {f: [x["equal"][f] for x in rs] for f in FRACTIONS}
        finals, spent_total = [x["final"] for x in rs], [x["spent"] for x in rs]
        results[name] = {
            "reached_fraction": float(np.isfinite(reach_arr).mean()),
            "compute_to_99pct_median_s": float(np.median(reach_arr)) if len(finite) else None,
            "speedup_vs_none_median": float(np.median(ratio)),
            "final_hv_mean": float(np.mean(finals)), "compute_total_mean_s": float(np.mean(spent_total)),
            "hv_at_equal_compute": {str(f): [float(np.mean(v)), float(1.96 * np.std(v, ddof=1) / math.sqrt(len(v)))]
                                    for f, v in equal.items()},
            "hv_at_equal_compute_per_repeat": {str(f): v for f, v in equal.items()},
            "curve": _mean_curve([x["curve"] for x in rs]),
        }
        print(f"{name:14s} reached {results[name]['reached_fraction']:.2f}  speedup median "
              f"{results[name]['speedup_vs_none_median']:.2f}x  final HV {np.mean(finals):.4f}  compute "
              f"{np.mean(spent_total):.0f} s  HV@compute {[round(float(np.mean(v)), 4) for v in equal.values()]}",
              flush=True)
    print(f"[{time.perf_counter() - t0:.0f} s]")
    doc = {"command": f"python experiments/bench_early_stopping.py --repeats {args.repeats} --trials {args.trials}"
                      f" --eta {' '.join(map(str, args.eta))} --grace {' '.join(map(str, args.grace))}"
                      f" --table {_rel(args.table)} --out {_rel(args.out)}",
           "table": _rel(args.table), "repeats": args.repeats, "trials": args.trials,
           "date": time.strftime("%Y-%m-%d"), "results": results}
    Path(args.out).write_text(json.dumps(doc, indent=1))
    plot(doc, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plot"]:  # redraw the figure of a recorded JSON
        plot(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[2]).with_suffix(".png"))
    else:
        main()
