"""Which proxy recipe ranks the default space's networks like a longer training? (issue: "Where does
MRLA pay off, and how sure are we?", item 4; EcoNAS, CVPR 2020, on more images for fewer epochs.)

Twelve networks of search_spaces/fmnist_resnet20.yaml (no MRLA, light / base everywhere, each form
alone in each stage, two mixtures, the SE-style projection everywhere) are trained under four proxy
recipes of equal cost (6,000 image-epochs at 28 px) and under a reference recipe 8x that cost
(12,000 images x 4 epochs) scored on the full 10,000-image test split (standard error of an accuracy
near 0.9: 0.003), each with 3 seeds. Every recipe is a run of the tool itself (`search` with the
twelve networks enqueued), so it resumes where it stopped. The proxies are scored on the same 1,000
held-out training images (validation is carved independently of the training size).

    python experiments/proxy_fidelity.py            # about 70 minutes on the 2-core machine
    python experiments/proxy_fidelity.py --report   # the tables again from the finished runs

Sizing: measured 2.6 ms per training image-epoch and ~0.7 ms per evaluated image (ResNet-20, 1
thread); proxies 4 x 36 x ~17 s, reference 36 x ~150 s, two trials at a time: ~65 minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrla_nas.arch import StageConfig  # noqa: E402
from mrla_nas.rundir.files import read_records  # noqa: E402
from mrla_nas.search import search  # noqa: E402
from mrla_nas.space import SearchSpace, load_space  # noqa: E402
from mrla_nas.analysis.validation import rank_correlations, t_interval  # noqa: E402

RUNS = ROOT / "experiments" / "runs" / "fidelity"
SEEDS = 3
RECIPES = {
    "proxy_3000x2": dict(train_size=3000, epochs=2),                       # today's default
    "proxy_6000x1": dict(train_size=6000, epochs=1),                       # EcoNAS: more images, fewer epochs
    "proxy_20px_6000x2": dict(train_size=6000, epochs=2, resolution=20),   # (20/28)^2 x 12,000 = 6,122
    "proxy_adamw_3000x2": dict(train_size=3000, epochs=2, optimizer="adamw", lr=2e-3, weight_decay=0.05),
}
REFERENCE = ("reference_12000x4_test", dict(train_size=12000, epochs=4, val_split="test", val_size=10000))
PLACEMENTS = ["---", "LLL", "BBB", "L--", "-L-", "--L", "B--", "-B-", "--B", "LBL", "BLB", "LLL/r4"]


def networks(space: SearchSpace):
    bb = space.backbone_combos()[0]
    out = []
    for p in PLACEMENTS:
        forms, _, red = p.partition("/r")
        stages = [StageConfig({"-": "none", "L": "light", "B": "base"}[c], None, int(red) if red else None)
                  for c in forms]
        out.append(space.arch(bb, [s if s.form != "none" else StageConfig() for s in stages]).canonical())
    return out


def recipe_space(base: SearchSpace, name: str, recipe: dict, n: int) -> SearchSpace:
    data = base.to_dict()
    data["name"] = name
    data["proxy"] = dict(data["proxy"], seeds=SEEDS, **recipe)
    data["search"] = dict(data["search"], trials=n, initial=[], sampler="random", concurrency=2)
    return SearchSpace.from_dict(data)


def accuracies(run: Path) -> dict:
    """key -> (mean, sd, per-seed accuracies, train seconds)"""
    out = {}
    for r in read_records(run).values():
        if r.get("status") == "complete":
            last = r["history"][-1]
            out[r["key"]] = (last["val_accuracy"], last.get("val_accuracy_sd", 0.0), last["val_accuracies"],
                             r.get("train_s"))
    return out


def run_all(base: SearchSpace, nets) -> None:
    for name, recipe in [*RECIPES.items(), REFERENCE]:
        space = recipe_space(base, name, recipe, len(nets))
        t0 = time.time()
        search(space, runs_dir=RUNS, resume=(RUNS / name / "study.journal").exists(), enqueue=nets, progress=True)
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)


def report(nets) -> dict:
    ref = accuracies(RUNS / REFERENCE[0])
    keys = [n.key() for n in nets]
    labels = dict(zip(keys, PLACEMENTS))
    doc = {"command": "python experiments/proxy_fidelity.py", "date": time.strftime("%Y-%m-%d"),
           "seeds": SEEDS, "networks": PLACEMENTS, "reference": {"name": REFERENCE[0], **REFERENCE[1]},
           "recipes": {}, "per_network": {}}
    for name in [*RECIPES, REFERENCE[0]]:
        acc = accuracies(RUNS / name)
        both = [k for k in keys if k in acc and k in ref]
        tau, rho = rank_correlations([acc[k][0] for k in both], [ref[k][0] for k in both])
        secs = [acc[k][3] / SEEDS for k in both if acc[k][3]]
        doc["recipes"][name] = {"recipe": (RECIPES.get(name) or REFERENCE[1]), "networks": len(both),
                                "kendall": [tau.value, tau.low, tau.high], "spearman": [rho.value, rho.low, rho.high],
                                "seconds_per_seed_mean": float(np.mean(secs)) if secs else None,
                                "mean_seed_sd": float(np.mean([acc[k][1] for k in both])) if both else None,
                                "top_network": labels[max(both, key=lambda k: acc[k][0])] if both else None}
        for k in both:
            mean, sd, low, high = t_interval(acc[k][2])
            doc["per_network"].setdefault(labels[k], {})[name] = [mean, sd, low, high]
    (ROOT / "experiments" / "results" / "proxy_fidelity.json").write_text(json.dumps(doc, indent=1))
    return doc


def markdown(doc: dict) -> str:
    """The tables of experiments/results/proxy_fidelity.md from the report."""
    ref = doc["reference"]["name"]
    lines = ["| recipe | cost | Kendall tau [95% CI] | Spearman rho [95% CI] | mean seed sd | s per seed | best network |",
             "|---|---|---|---|---|---|---|"]
    for name, r in doc["recipes"].items():
        k, s = r["kendall"], r["spearman"]
        rec = r["recipe"]
        cost = rec.get("train_size", 0) * rec.get("epochs", 0) * (rec.get("resolution", 28) / 28) ** 2
        lines.append(f"| {name} | {cost:,.0f} image-epochs | {k[0]:+.2f} [{k[1]:+.2f}, {k[2]:+.2f}] | "
                     f"{s[0]:+.2f} [{s[1]:+.2f}, {s[2]:+.2f}] | {r['mean_seed_sd']:.4f} | "
                     f"{r['seconds_per_seed_mean']:.0f} | {r['top_network']} |")
    lines += ["", "Per network: mean [95% t-interval] over 3 seeds.", "",
              "| network | " + " | ".join(doc["recipes"]) + " |", "|---|" + "---|" * len(doc["recipes"])]
    for net, per in doc["per_network"].items():
        cells = [f"{per[n][0]:.4f} [{per[n][2]:.4f}, {per[n][3]:.4f}]" if n in per else "-" for n in doc["recipes"]]
        lines.append(f"| {net} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", action="store_true", help="only tabulate the finished runs")
    args = parser.parse_args()
    base = load_space(ROOT / "search_spaces" / "fmnist_resnet20.yaml")
    nets = networks(base)
    assert len({n.key() for n in nets}) == len(nets) == len(PLACEMENTS) and all(base.contains(n) for n in nets)
    if not args.report:
        run_all(base, nets)
    doc = report(nets)
    (ROOT / "experiments" / "results" / "proxy_fidelity_tables.md").write_text(markdown(doc))
    for name, r in doc["recipes"].items():
        k, s = r["kendall"], r["spearman"]
        print(f"{name:26s} tau {k[0]:+.2f} [{k[1]:+.2f}, {k[2]:+.2f}]  rho {s[0]:+.2f} [{s[1]:+.2f}, {s[2]:+.2f}]  "
              f"{r['seconds_per_seed_mean'] or 0:.1f} s/seed  sd {r['mean_seed_sd'] or 0:.4f}  top {r['top_network']}")


if __name__ == "__main__":
    main()
