"""Build the tabular benchmarks shipped in experiments/tables/: every network of a space evaluated
under two seeds by the tool itself (`search.sampler: brute_force`), exported with `mrla-nas table`.

    python experiments/build_tables.py default          # fmnist_resnet20, the default proxy recipe
    python experiments/build_tables.py early_stopping   # fmnist_resnet20's 125 networks, 6 epochs
    python experiments/build_tables.py depth            # fmnist_depth at width x1: 81 networks, 6 epochs

Each run resumes where it stopped (run directories under experiments/runs/tables/). Sizing (2 cores,
two trials at a time, 2.6 ms per training image-epoch at 28 px on one thread):

- default: the default space's own proxy (search_spaces/fmnist_resnet20.yaml) with 2 seeds:
  125 networks x 2 seeds x ~17 s / 2 slots = ~35 minutes estimated, 40 minutes of training measured.
- early_stopping: the same 125 networks with a 6-epoch proxy on 1,200 images at 20 px (400
  validation images): 7,200 image-epochs at (20/28)^2 of the pixels; estimated ~27 minutes, measured
  42.5 minutes of training on the two slots (about 20 s per network and seed: six validation
  passes and per-batch overheads weigh more than the pixel count says). Six epochs give the rungs
  1, 2, 4 (eta 2) or 1, 3 (eta 3) room; 20 px and 1,200
  images keep the table within the hour, and learning curves still separate by epoch 6.
- depth (issue 23, item 4): search_spaces/fmnist_depth.yaml with its width fixed at x1: ResNet-20 / 32 /
  44 x the 27 placements = 81 networks, FLOPs and latency spanning 2.2x, so that the samplers and the
  early stopping are compared where there is a trade-off. One table serves both benchmarks: the
  early-stopping recipe above (6 epochs, its last the full fidelity). Training-step latency (x plain
  ResNet-20, the space's objective) is measured by the search itself, each network once. Sizing: the
  mean network costs ~1.6 ResNet-20s (1, 1.6, 2.2), so 81 x 1.6 / 125 of the early_stopping table's
  42.5 minutes = ~45 minutes of training, plus ~10 minutes of latency; the x1.5 width would double the
  space and treble the hours, beyond the hour this machine gives a table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrla_nas.search import search  # noqa: E402
from mrla_nas.space import SearchSpace, load_space  # noqa: E402
from mrla_nas.analysis.benchmark_table import export_table  # noqa: E402

RUNS = ROOT / "experiments" / "runs" / "tables"
TABLES = ROOT / "experiments" / "tables"
EARLY_STOPPING = dict(epochs=6, train_size=1200, val_size=400, resolution=20)
# which -> (space file, proxy overrides, backbone overrides, table file)
RECIPES = {
    "default": ("fmnist_resnet20.yaml", {}, {}, "fmnist_resnet20_default.csv"),
    "early_stopping": ("fmnist_resnet20.yaml", EARLY_STOPPING, {}, "fmnist_resnet20_early_stopping.csv"),
    "depth": ("fmnist_depth.yaml", EARLY_STOPPING, {"channels": {"choices": [[16, 32, 64]]}}, "fmnist_depth.csv"),
}


def table_space(which: str) -> SearchSpace:
    space_file, proxy, backbone, _ = RECIPES[which]
    data = load_space(ROOT / "search_spaces" / space_file).to_dict()
    data["name"] = f"table_{which}"
    data["backbone"] = dict(data["backbone"], **backbone)
    data["proxy"] = dict(data["proxy"], seeds=2, **proxy)
    base = SearchSpace.from_dict(data)
    data["search"] = dict(data["search"], sampler="brute_force", trials=base.size(), initial=[], scheduler="none",
                          concurrency=2)
    return SearchSpace.from_dict(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=sorted(RECIPES))
    args = parser.parse_args()
    space = table_space(args.which)
    t0 = time.time()
    result = search(space, runs_dir=RUNS, resume=(RUNS / space.name / "study.journal").exists())
    TABLES.mkdir(parents=True, exist_ok=True)
    out = export_table(result.run_dir, TABLES / RECIPES[args.which][3],
                       command=f"python experiments/build_tables.py {args.which}")
    print(f"{out}: {len(result.trials)} networks in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
