"""CPU share of search trials beside other busy processes: Ray's default worker niceness (15, the
"before") against the driver's own priority (search.worker_niceness: 0, the "after").

Two single-threaded busy loops at nice 0 occupy the 2-core machine. For each setting, one epoch of the
same tiny network is timed in a plain process (nice 0, at that moment) and inside a search of two
trials run by Ray with that worker niceness; the ratio is what a search loses to its neighbours.

    python experiments/bench_cpu_share.py --out experiments/results/cpu_share.json

Sized to a few minutes: the "before" trials get ~3% of a core each (CFS weight 36 against 1024).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrla_nas.rundir.files import read_records  # noqa: E402
from mrla_nas.search import search  # noqa: E402

PLAIN = """
import sys, time, torch, yaml
from mrla_nas.space import SearchSpace
from mrla_nas.training.proxy import train_proxy
space = SearchSpace.from_file(sys.argv[1])
arch = space.initial_configs()[0]
result = train_proxy(arch, space.proxy, seed=space.seed)
print(result.history[0].seconds)
"""


def _space(folder: Path, niceness: int) -> Path:
    data = yaml.safe_load((ROOT / "search_spaces" / "tiny.yaml").read_text())
    data["name"] = f"nice{niceness}"
    data["proxy"].update(path=str(ROOT / "tests" / "data" / "fmnist_slice"), train_size=900, val_size=256, epochs=1)
    data["search"].update(initial=["none", "none"], trials=2, concurrency=2, worker_niceness=niceness)
    path = folder / f"space-{niceness}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _plain_epoch(space: Path) -> float:
    out = subprocess.run([sys.executable, "-c", PLAIN, str(space)], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "cpu_share.json"))
    parser.add_argument("--busy", type=int, default=2, help="competing single-threaded busy processes")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    rows = []
    try:
        time.sleep(1)
        with tempfile.TemporaryDirectory() as tmp:
            for niceness in (15, 0):
                space = _space(Path(tmp), niceness)
                plain = _plain_epoch(space)
                t0 = time.perf_counter()
                result = search(space, runs_dir=Path(tmp) / "runs", progress=False)
                wall = time.perf_counter() - t0
                recs = read_records(result.run_dir).values()
                epochs = [r["history"][0]["seconds"] for r in recs if r["history"]]
                rows.append({"worker_niceness": niceness, "plain_epoch_s": plain, "trial_epoch_s": epochs,
                             "ratio_median": sorted(epochs)[len(epochs) // 2] / plain, "search_wall_s": wall,
                             "recorded_niceness": sorted({r.get("niceness") for r in recs})})
                print(json.dumps(rows[-1]))
    finally:
        for p in busy:
            p.kill()
    doc = {"command": "python experiments/bench_cpu_share.py", "busy_processes": args.busy, "cpus": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    Path(args.out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
