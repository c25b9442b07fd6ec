"""Orchestration overhead per trial: what Ray Tune + Optuna + bookkeeping add to the training itself.

    .venv/bin/python experiments/bench_orchestration.py --trials 12 --out experiments/results/orchestration.json

Runs the tiny space (seconds per trial) on the committed Fashion-MNIST slice, so the overhead is not
drowned by training. Reports: the session's wall-clock, Ray start-up, the summed training time, and
per trial: (wall-clock x concurrency - training) / trials, i.e. every second a worker slot was not
training.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--out")
    args = ap.parse_args()

    import ray

    from mrla_nas.run_dir import read_records
    from mrla_nas.search import search

    with tempfile.TemporaryDirectory() as tmp:
        space = yaml.safe_load((ROOT / "search_spaces" / "tiny.yaml").read_text())
        space["proxy"]["path"] = str(ROOT / "tests" / "data" / "fmnist_slice")
        path = Path(tmp) / "tiny.yaml"
        path.write_text(yaml.safe_dump(space))
        conc = space["search"]["concurrency"]
        t0 = time.perf_counter()
        ray.init(num_cpus=conc, include_dashboard=False, log_to_driver=False)
        t_ray = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = search(path, runs_dir=Path(tmp) / "runs", trials=args.trials, progress=False)
        t_search = time.perf_counter() - t1
        ray.shutdown()
        recs = read_records(result.run_dir).values()
        train = sum(r.get("train_s") or 0.0 for r in recs)
        inside = sum(r.get("wall_s") or 0.0 for r in recs)
        n = len(result.trials)
    out = {"trials": n, "concurrency": conc, "ray_init_s": round(t_ray, 2), "search_wall_s": round(t_search, 2),
           "training_s_total": round(train, 2), "trainable_s_total": round(inside, 2),
           "overhead_per_trial_s": round((t_search * conc - train) / n, 2),
           "overhead_inside_trainable_per_trial_s": round((inside - train) / n, 3)}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
