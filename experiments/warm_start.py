"""Does a warm start from the user's pretrained plain network make the proxy rank networks more like a
long training, and does it shrink the proxy's eightfold exaggeration of MRLA's gain? (issue 24, item 4)

1. A plain ResNet-20 (the default space's backbone, no MRLA) is pretrained by the tool itself:
   `mrla-nas train` on Fashion-MNIST's training split, the proxy's 1,000 validation images held out
   (`--hold-out 1000 --seed 0`: the subset the default space carves with its seed 0), so no proxy
   is scored on an image the backbone has seen.
2. The twelve networks of experiments/proxy_fidelity.py are trained under the default proxy recipe
   (3,000 images x 2 epochs, 3 seeds: the same proxy cost as from scratch), every one starting from
   that checkpoint (`backbone.pretrained`: MRLA branches at zero), as a run of the tool itself
   (`search` with the networks enqueued; it resumes where it stopped).
3. Both proxies are compared with the same 8x reference (12,000 images x 4 epochs from scratch,
   scored on the 10,000-image test split) that proxy_fidelity.md recorded: its per-network means and
   intervals (experiments/results/proxy_fidelity.json), with validate's statistics
   (mrla_nas.analysis.validation: Kendall tau and Spearman rho with bootstrap intervals, t-intervals).

    .venv/bin/python experiments/warm_start.py            # pretrains (once), runs the proxy, writes the result
    .venv/bin/python experiments/warm_start.py --report   # the tables again from the finished run

Sizing (this 2-core machine, one thread per trial): pretraining 59,000 images x EPOCHS at ~3-6 ms per
image-epoch on 2 threads, ~10-15 minutes; the proxy 36 trainings of ~20-45 s, two at a time, ~10-15
minutes. The checkpoint (2.2 MB) stays in experiments/runs/ (not committed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from proxy_fidelity import PLACEMENTS, SEEDS, accuracies, networks  # noqa: E402

from mrla_nas.analysis.validation import rank_correlations, t_interval  # noqa: E402
from mrla_nas.search import search  # noqa: E402
from mrla_nas.space import SearchSpace, load_space  # noqa: E402

RUNS = ROOT / "experiments" / "runs" / "warm_start"
EPOCHS = 3          # pretraining epochs over the 59,000 images left after the hold-out
PRETRAIN = dict(epochs=EPOCHS, batch_size=128, lr=0.1, optimizer="sgd", weight_decay=5e-4, hold_out=1000, seed=0,
                threads=2)
NAME = "warm_proxy_3000x2"


def pretrain() -> Path:
    from mrla_nas.training.full import train

    arch_file = RUNS / "resnet20_plain.yaml"
    out = RUNS / "pretrain"
    if (out / "model.pt").exists():
        return out / "model.pt"
    RUNS.mkdir(parents=True, exist_ok=True)
    arch_file.write_text(yaml.safe_dump({"block": "basic", "layers": [3, 3, 3], "channels": [16, 32, 64],
                                         "stem": "small", "in_chans": 1, "num_classes": 10, "stages": "none"}))
    t0 = time.time()
    result = train(arch_file, out_dir=out, dataset="fashion-mnist", path="/usr/share/datasets/fashion-mnist",
                   resolution=28, **PRETRAIN)
    (RUNS / "pretrain_seconds.txt").write_text(f"{time.time() - t0:.0f}\n")
    print(f"pretrained: test accuracy {result.get('test_accuracy')}", flush=True)
    return out / "model.pt"


def warm_space(base: SearchSpace, checkpoint: Path, n: int) -> SearchSpace:
    data = base.to_dict()
    data["name"] = NAME
    data["backbone"] = dict(data["backbone"], pretrained=str(checkpoint))
    data["proxy"] = dict(data["proxy"], seeds=SEEDS)
    data["search"] = dict(data["search"], trials=n, initial=[], sampler="random", concurrency=2)
    return SearchSpace.from_dict(data)


def report(nets, checkpoint: Path) -> dict:
    fidelity = json.loads((ROOT / "experiments" / "results" / "proxy_fidelity.json").read_text())
    ref_name, scratch_name = fidelity["reference"]["name"], "proxy_3000x2"
    per = fidelity["per_network"]
    warm = accuracies(RUNS / NAME)
    keys = {label: net.canonical().key() for label, net in zip(PLACEMENTS, nets)}
    labels = [p for p in PLACEMENTS if keys[p] in warm and p in per]
    ref = [per[p][ref_name][0] for p in labels]
    doc = {"command": "python experiments/warm_start.py", "date": time.strftime("%Y-%m-%d"), "seeds": SEEDS,
           "pretrain": dict(PRETRAIN, seconds=_read(RUNS / "pretrain_seconds.txt"),
                            test_accuracy=_pretrain_accuracy()),
           "reference": ref_name, "proxies": {}, "per_network": {}}
    for name, means in ((scratch_name, [per[p][scratch_name][0] for p in labels]),
                        (NAME, [warm[keys[p]][0] for p in labels])):
        tau, rho = rank_correlations(means, ref)
        doc["proxies"][name] = {"kendall": [tau.value, tau.low, tau.high], "spearman": [rho.value, rho.low, rho.high],
                                "top_network": labels[int(np.argmax(means))]}
    for p in labels:
        mean, sd, low, high = t_interval(warm[keys[p]][2])
        doc["per_network"][p] = {NAME: [mean, sd, low, high], scratch_name: per[p][scratch_name],
                                 ref_name: per[p][ref_name]}
    # MRLA's gain over no MRLA, each proxy against the reference (a paired t-interval over seeds for
    # the warm run, whose seeds share their training subsets and batch order across networks)
    doc["gains"] = {}
    for form in ("LLL", "BBB"):
        if form in labels and "---" in labels:
            diffs = np.array(warm[keys[form]][2]) - np.array(warm[keys["---"]][2])
            g = t_interval(list(diffs))
            doc["gains"][form] = {NAME: [g[0], g[2], g[3]],
                                  scratch_name: per[form][scratch_name][0] - per["---"][scratch_name][0],
                                  ref_name: per[form][ref_name][0] - per["---"][ref_name][0]}
    (ROOT / "experiments" / "results" / "warm_start.json").write_text(json.dumps(doc, indent=1))
    return doc


def _read(path: Path):
    return float(path.read_text()) if path.exists() else None


def _pretrain_accuracy():
    result = RUNS / "pretrain" / "result.json"
    if not result.exists():
        return None
    return json.loads(result.read_text()).get("test_accuracy")


def markdown(doc: dict) -> str:
    ref = doc["reference"]
    lines = ["| proxy (3,000 images x 2 epochs, 3 seeds) | Kendall tau [95% CI] | Spearman rho [95% CI] | best network |",
             "|---|---|---|---|"]
    for name, r in doc["proxies"].items():
        k, s = r["kendall"], r["spearman"]
        lines.append(f"| {name} | {k[0]:+.2f} [{k[1]:+.2f}, {k[2]:+.2f}] | {s[0]:+.2f} [{s[1]:+.2f}, {s[2]:+.2f}] | "
                     f"{r['top_network']} |")
    lines += ["", f"MRLA's gain over no MRLA (`---`), accuracy points; reference: {ref}.", "",
              "| network | warm-start proxy [95% CI] | from-scratch proxy | 8x reference |", "|---|---|---|---|"]
    for form, g in doc["gains"].items():
        w = g[NAME]
        lines.append(f"| {form} | {w[0]:+.4f} [{w[1]:+.4f}, {w[2]:+.4f}] | {g['proxy_3000x2']:+.4f} | {g[ref]:+.4f} |")
    lines += ["", "Per network: mean [95% t-interval] over 3 seeds.", "",
              f"| network | {NAME} | proxy_3000x2 | {ref} |", "|---|---|---|---|"]
    for net, per in doc["per_network"].items():
        cells = [f"{per[n][0]:.4f} [{per[n][2]:.4f}, {per[n][3]:.4f}]" for n in (NAME, "proxy_3000x2", ref)]
        lines.append(f"| {net} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", action="store_true", help="only tabulate the finished run")
    args = parser.parse_args()
    base = load_space(ROOT / "search_spaces" / "fmnist_resnet20.yaml")
    checkpoint = RUNS / "pretrain" / "model.pt"
    if not args.report:
        checkpoint = pretrain()
    space = warm_space(base, checkpoint, len(PLACEMENTS))
    nets = networks(space)
    if not args.report:
        t0 = time.time()
        search(space, runs_dir=RUNS, resume=(RUNS / NAME / "study.journal").exists(), enqueue=nets, progress=True)
        print(f"{NAME}: {time.time() - t0:.0f} s", flush=True)
    doc = report(nets, checkpoint)
    (ROOT / "experiments" / "results" / "warm_start_tables.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
