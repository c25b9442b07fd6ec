"""Build the tabular benchmarks shipped in experiments/tables/: every network of a space evaluated
under two seeds by the tool itself (`search.sampler: brute_force`), exported with `mrla-nas table`.

    python experiments/build_tables.py default          # fmnist_resnet20, the default proxy recipe
    python experiments/build_tables.py early_stopping   # fmnist_resnet20's 125 networks, 6 epochs

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
RECIPES = {
    "default": {},
    "early_stopping": dict(epochs=6, train_size=1200, val_size=400, resolution=20),
}


def table_space(which: str) -> SearchSpace:
    base = load_space(ROOT / "search_spaces" / "fmnist_resnet20.yaml")
    data = base.to_dict()
    data["name"] = f"table_{which}"
    data["proxy"] = dict(data["proxy"], seeds=2, **RECIPES[which])
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
    out = export_table(result.run_dir, TABLES / f"fmnist_resnet20_{args.which}.csv",
                       command=f"python experiments/build_tables.py {args.which}")
    print(f"{out}: {len(result.trials)} networks in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
