"""Hypervolume after N trials for TPE, NSGA-II and random sampling, several seeds, on a space.

    .venv/bin/python experiments/bench_samplers.py --space search_spaces/fmnist_resnet20.yaml \
        --trials 12 --seeds 0 1 2 --out experiments/results/samplers.json

Each (sampler, seed) is a full search in its own run directory under --runs-dir; the hypervolume
after every finished trial is recomputed from the trials table (reference point: accuracy 0 and the
space's FLOPs budget).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="search_spaces/fmnist_resnet20.yaml")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "random"])
    ap.add_argument("--runs-dir")
    ap.add_argument("--out")
    args = ap.parse_args()

    from mrla_nas.pareto import pareto
    from mrla_nas.search import search
    from mrla_nas.space import load_space

    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="mrla-samplers-"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(args.space).read_text())
    max_flops = load_space(args.space).constraints["max_flops"]
    results = {}
    for sampler in args.samplers:
        for seed in args.seeds:
            space = dict(base, seed=seed, search=dict(base.get("search", {}), sampler=sampler))
            path = runs_dir / f"{sampler}-{seed}.yaml"
            path.write_text(yaml.safe_dump(space))
            t0 = time.perf_counter()
            done = (runs_dir / f"{sampler}-{seed}" / "study.journal").exists()  # rerun: resume, redo nothing
            res = search(path, name=f"{sampler}-{seed}", runs_dir=runs_dir, trials=args.trials, progress=False,
                         resume=done)
            df = res.trials.sort_values("trial_id")
            curve = [pareto(df.iloc[: i + 1], max_flops=max_flops)[1] for i in range(len(df))]
            results[f"{sampler}/{seed}"] = {"hypervolume": curve, "wall_s": round(time.perf_counter() - t0, 1),
                                            "front_size": len(pareto(df, max_flops=max_flops)[0])}
            print(sampler, seed, f"HV {curve[-1]:.4g}", f"{results[f'{sampler}/{seed}']['wall_s']}s", flush=True)
    summary = {s: {"final_hv_mean": statistics.mean(results[f"{s}/{k}"]["hypervolume"][-1] for k in args.seeds),
                   "final_hv_stdev": statistics.pstdev(results[f"{s}/{k}"]["hypervolume"][-1] for k in args.seeds)}
               for s in args.samplers}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"space": args.space, "trials": args.trials, "seeds": args.seeds,
                                              "runs_dir": str(runs_dir), "summary": summary, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
