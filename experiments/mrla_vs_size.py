"""MRLA or a bigger network? At equal cost, does the best MRLA network beat the best plain one, and does
the paper's claim (an MRLA-light network above a deeper plain one) hold at our scale? (issue 23, item 3)

Networks of search_spaces/fmnist_depth.yaml (CIFAR-style ResNets on Fashion-MNIST): plain ResNet-20,
-32, -44 and ResNet-20 at 1.5x width, against MRLA-light and MRLA-base everywhere in ResNet-20 and
MRLA-light in ResNet-32. Each is a trial of a run of the tool itself (`search` with them enqueued:
the default proxy, 2 seeds; FLOPs by fvcore; training-step latency measured interleaved against
plain ResNet-20, the space's reference), then the tool's `validate` retrains all of them at the 8x
reference recipe of proxy_fidelity.md (12,000 images x 4 epochs, 3 seeds, scored on the 10,000-image
test split). Both resume where they stopped.

    .venv/bin/python experiments/mrla_vs_size.py            # about 80 minutes on the 2-core machine
    .venv/bin/python experiments/mrla_vs_size.py --report   # the tables again from the finished runs

Sizing: the 8x recipe is 48,000 image-epochs. Estimated at ~150 s per seed for plain ResNet-20 (3 ms
per image-epoch, from warm_start.py's 2-thread pretraining), it took ~190 s on one thread beside a
second trial (ResNet-44: ~430 s); with ~1.6x / 2.2x for ResNet-32 / -44, ~2.3x for the 1.5x width
and ~1.3x with MRLA, 3 seeds of 7 networks two at a time are about 75 minutes, plus 6 of proxy.
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

from mrla_nas.analysis.validation import t_interval, validate, welch_interval  # noqa: E402
from mrla_nas.arch import StageConfig  # noqa: E402
from mrla_nas.rundir.files import read_records  # noqa: E402
from mrla_nas.search import search  # noqa: E402
from mrla_nas.space import SearchSpace, load_space  # noqa: E402

RUNS = ROOT / "experiments" / "runs" / "mrla_vs_size"
NAME = "depth"
REFERENCE_RECIPE = dict(epochs=4, train_size=12000, val_split="test", val_size=10000, seeds=3)
# (label, layers per stage, channels, forms)
NETWORKS = [("R20", 3, [16, 32, 64], "---"), ("R32", 5, [16, 32, 64], "---"), ("R44", 7, [16, 32, 64], "---"),
            ("R20x1.5", 3, [24, 48, 96], "---"), ("R20-LLL", 3, [16, 32, 64], "LLL"),
            ("R20-BBB", 3, [16, 32, 64], "BBB"), ("R32-LLL", 5, [16, 32, 64], "LLL")]
FORMS = {"-": "none", "L": "light", "B": "base"}


def networks(space: SearchSpace):
    combos = {(bb["layers"][0], tuple(bb["channels"])): bb for bb in space.backbone_combos()}
    return [space.arch(combos[(n, tuple(ch))], [StageConfig(FORMS[c]) for c in forms]).canonical()
            for _, n, ch, forms in NETWORKS]


def run_space(base: SearchSpace, n: int) -> SearchSpace:
    data = base.to_dict()
    data["name"] = NAME
    data["search"] = dict(data["search"], trials=n, initial=[], sampler="random", concurrency=2)
    return SearchSpace.from_dict(data)


def report(nets) -> dict:
    run = RUNS / NAME
    proxy = {r["key"]: r for r in read_records(run).values() if r.get("status") == "complete"}
    val = {r["key"]: r for r in read_records(run / "validate").values() if r.get("status") == "complete"}
    rows = {}
    for (label, *_), net in zip(NETWORKS, nets):
        p, v = proxy.get(net.key()), val.get(net.key())
        if p is None or v is None:
            continue
        accs = v["history"][-1]["val_accuracies"]
        mean, sd, low, high = t_interval(accs)
        rows[label] = {"flops": p["flops"], "params": p["params"], "latency_ratio": p["latency"]["ratio"],
                       "latency_spread": p["latency"]["spread"], "latency_ms": p["latency"]["ms"],
                       "proxy": p["history"][-1]["val_accuracy"], "validated": [mean, sd, low, high], "seeds": accs}
    doc = {"command": "python experiments/mrla_vs_size.py", "date": time.strftime("%Y-%m-%d"),
           "reference_recipe": REFERENCE_RECIPE, "networks": rows, "comparisons": {}}

    def diff(a, b):  # a - b: Welch t-interval of the difference of the seed means
        x, y = (rows[k]["seeds"] for k in (a, b))
        return [float(v) for v in welch_interval((np.mean(x), np.std(x, ddof=1), len(x)),
                                                 (np.mean(y), np.std(y, ddof=1), len(y)))]

    for a, b in (("R20-LLL", "R32"), ("R20-BBB", "R32"), ("R20-BBB", "R44"), ("R20-LLL", "R44"), ("R32-LLL", "R44"),
                 ("R20-BBB", "R20x1.5"), ("R20-LLL", "R20x1.5"), ("R20-LLL", "R20"), ("R20-BBB", "R20"),
                 ("R32-LLL", "R32"), ("R32", "R20"), ("R44", "R20"), ("R20x1.5", "R20")):
        if a in rows and b in rows:
            doc["comparisons"][f"{a} - {b}"] = diff(a, b) + [rows[a]["latency_ratio"] / rows[b]["latency_ratio"],
                                                             rows[a]["flops"] / rows[b]["flops"]]
    # the question at equal cost: for each plain network, the most accurate MRLA network no dearer
    plain = [k for k in rows if "-" not in k]
    for cost in ("latency_ratio", "flops"):
        doc[f"equal_{cost}"] = {}
        for p in plain:
            cheaper = [k for k in rows if "-" in k and rows[k][cost] <= rows[p][cost]]
            if cheaper:
                best = max(cheaper, key=lambda k: rows[k]["validated"][0])
                doc[f"equal_{cost}"][p] = [best] + diff(best, p)
    (ROOT / "experiments" / "results" / "mrla_vs_size.json").write_text(json.dumps(doc, indent=1))
    return doc


def markdown(doc: dict) -> str:
    lines = ["| network | params | FLOPs | x FLOPs | training step x R20 (± spread) | proxy acc | 8x reference acc [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    base = doc["networks"].get("R20", {}).get("flops")
    for label, r in sorted(doc["networks"].items(), key=lambda kv: kv[1]["latency_ratio"]):
        v = r["validated"]
        lines.append(f"| {label} | {r['params']:,} | {r['flops']:,} | {r['flops'] / base:.2f} | "
                     f"{r['latency_ratio']:.3f} ± {r['latency_spread']:.3f} | {r['proxy']:.4f} | "
                     f"{v[0]:.4f} [{v[2]:.4f}, {v[3]:.4f}] |")
    lines += ["", "Differences of the 8x reference accuracy (Welch 95% interval over 3 + 3 seeds):", "",
              "| comparison | training step | FLOPs | difference [95% CI] |", "|---|---|---|---|"]
    for name, d in doc["comparisons"].items():
        lines.append(f"| {name} | {d[3]:.2f}x | {d[4]:.2f}x | {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}] |")
    for cost, what in (("latency_ratio", "training step"), ("flops", "FLOPs")):
        lines += ["", f"Each plain network against the most accurate MRLA network whose {what} is no dearer:", "",
                  "| plain | best MRLA at no more cost | difference [95% CI] |", "|---|---|---|"]
        for p, (best, *d) in doc[f"equal_{cost}"].items():
            lines.append(f"| {p} | {best} | {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", action="store_true", help="only tabulate the finished runs")
    args = parser.parse_args()
    space = run_space(load_space(ROOT / "search_spaces" / "fmnist_depth.yaml"), len(NETWORKS))
    nets = networks(space)
    if not args.report:
        t0 = time.time()
        search(space, runs_dir=RUNS, resume=(RUNS / NAME / "study.journal").exists(), enqueue=nets, progress=True)
        print(f"proxy search: {time.time() - t0:.0f} s", flush=True)
        t0 = time.time()
        trials = sorted(r["trial_id"] for r in read_records(RUNS / NAME).values() if r.get("status") == "complete")
        validate(RUNS / NAME, trials=trials, **REFERENCE_RECIPE)
        print(f"validate at 8x: {time.time() - t0:.0f} s", flush=True)
    doc = report(nets)
    text = markdown(doc)
    (ROOT / "experiments" / "results" / "mrla_vs_size_tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
