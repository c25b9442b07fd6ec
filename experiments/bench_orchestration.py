"""Orchestration overhead per trial, and how it grows with the run.

    python experiments/bench_orchestration.py --out experiments/results/orchestration.json

1. The tiny space with its real proxy training (each trial trains ~0.1 s), 20 trials, 2 at a time:
   overhead per trial = (wall-clock x 2 slots - training) / trials, i.e. every second a worker slot
   was not training. Ray's start-up is reported apart.
2. Growth: a synthetic space of 35,937 networks (three tiny stages, every head count and
   reduction), random sampling, a trainable that writes its record and reports at once, runs of 20,
   200 and 2,000 trials: the per-trial overhead at each size, and apart from it the three things
   that grow with a run: the default sampler's ask (multivariate TPE) at that study size, the trials-table refresh (the progress line and
   trials.csv after every trial) and the front.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def instant_trainable(config, ctx):
    """Record and report like the real trainable, without training."""
    import zlib

    from ray import tune

    from mrla_nas.arch import ArchConfig
    from mrla_nas.rundir.files import record_path, write_json_atomic

    number = config["trial_number"]
    arch = ArchConfig.from_dict(config["arch"])
    acc = (zlib.crc32(arch.key().encode()) % 1000) / 1000
    rec = {"trial_id": number, "arch": config["arch"], "key": arch.key(), "params": config["params"],
           "flops": config["flops"], "status": "complete", "fidelity": 1.0, "error": None, "wall_s": 0.0,
           "train_s": 0.0, "history": [{"epoch": 1, "val_accuracy": acc, "val_loss": 1.0, "train_loss": 1.0,
                                        "seconds": 0.0, "val_accuracy_sd": 0.0, "seeds": [0],
                                        "val_accuracies": [acc]}]}
    write_json_atomic(record_path(Path(ctx["run_dir"]), number), rec)
    tune.report({"accuracy": acc, "flops": config["flops"], "params": config["params"], "epoch": 1,
                 "fidelity": 1.0, "trial_number": number})


def _tiny(tmp: Path, **search) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    space = yaml.safe_load((ROOT / "search_spaces" / "tiny.yaml").read_text())
    space["proxy"]["path"] = str(ROOT / "tests" / "data" / "fmnist_slice")
    space["search"].update(search)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def _synthetic(tmp: Path) -> Path:
    space = yaml.safe_load((ROOT / "search_spaces" / "tiny.yaml").read_text())
    space["name"] = "synthetic"
    space["backbone"].update(layers=[1, 1, 1], channels=[8, 16, 32])
    space["stages"] = {"form": ["none", "light", "base"], "heads": [1, 2, 4, 8], "reduction": [None, 2, 4, 8]}
    space["constraints"] = {"max_flops": None}
    space["proxy"]["path"] = str(ROOT / "tests" / "data" / "fmnist_slice")
    # random sampling: the orchestration's growth apart from the sampler's (whose ask is timed apart)
    space["search"].update(initial=[], sampler="random")
    path = tmp / "synthetic.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def real_overhead(tmp: Path, trials: int) -> dict:
    import ray

    from mrla_nas.rundir.files import read_records
    from mrla_nas.search import search

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_ray = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = search(_tiny(tmp), runs_dir=tmp / "runs", trials=trials, progress=False)
    wall = time.perf_counter() - t1
    ray.shutdown()
    recs = read_records(result.run_dir).values()
    train = sum(r.get("train_s") or 0.0 for r in recs)
    n = len(result.trials)
    return {"trials": n, "ray_init_s": round(t_ray, 2), "search_wall_s": round(wall, 2),
            "training_s_total": round(train, 2), "overhead_per_trial_s": round((wall * 2 - train) / n, 3)}


def growth(tmp: Path, sizes) -> list:
    import optuna
    import ray

    from mrla_nas.search.samplers import make_sampler
    from mrla_nas.objectives.pareto import pareto
    from mrla_nas.rundir.trials_table import TrialsTable
    from mrla_nas.search import search
    from mrla_nas.space import SearchSpace, load_space

    space_path = _synthetic(tmp)
    space = load_space(space_path)
    tpe_space = SearchSpace.from_dict(dict(space.to_dict(), search=dict(space.search, sampler="tpe")))
    rows = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        done = 0
        for n in sizes:  # one run grown to each size in turn: the per-trial cost of the trials added
            t0 = time.perf_counter()
            search(space_path, runs_dir=tmp / "runs", trials=n, resume=done > 0, progress=False,
                   trainable=instant_trainable)
            wall = time.perf_counter() - t0
            run = tmp / "runs" / "synthetic"
            table = TrialsTable(run)
            table.write_csv()  # first read: the whole journal
            t1 = time.perf_counter()
            df = table.write_csv()  # what the callback pays after a trial (incremental)
            t_table = time.perf_counter() - t1
            t2 = time.perf_counter()
            pareto(df, space.objectives, space.constraints)
            t_front = time.perf_counter() - t2
            study = optuna.load_study(study_name="mrla-nas", storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(run / "study.journal"))),
                sampler=make_sampler(tpe_space))  # the default sampler at this study size
            t3 = time.perf_counter()
            trial = study.ask()
            space.sample(trial)
            t_ask = time.perf_counter() - t3
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            # steady state: the median gap between records written by consecutive new trials, x 2
            # slots (a session's set-up, fvcore's counts of the space's extremes and Ray's start, is
            # not a per-trial cost)
            stamps = sorted(p.stat().st_mtime for p in (run / "trials").glob("*.json"))[done:]
            gaps = [b - a for a, b in zip(stamps, stamps[1:])][len(stamps) // 4:]
            per_trial = 2 * sorted(gaps)[len(gaps) // 2] if gaps else float("nan")
            rows.append({"trials": n, "added": n - done, "session_wall_s": round(wall, 2),
                         "overhead_per_trial_s": round(per_trial, 3),
                         "table_refresh_s": round(t_table, 4), "front_s": round(t_front, 4),
                         "tpe_ask_s": round(t_ask, 4)})
            print(json.dumps(rows[-1]), flush=True)
            done = n
    finally:
        ray.shutdown()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 2000])
    ap.add_argument("--out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real = real_overhead(Path(tmp) / "real", args.trials)
        print(json.dumps(real), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = growth(Path(tmp), args.sizes)
    out = {"command": "python experiments/bench_orchestration.py", "date": time.strftime("%Y-%m-%d %H:%M"),
           "real": real, "growth": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
