"""Add measured latencies to a tabular benchmark (issue 23): every network of the table timed against
the space's reference network (its first backbone choice without MRLA), interleaved (cost/latency.py), written as its latency_* columns and
the settings and device in the provenance, so that replays can search on latency.

    .venv/bin/python experiments/table_latency.py experiments/tables/fmnist_resnet20_default.csv

Sized for the shipped default table: 125 networks, one training step at the proxy's batch (64) and
input (28 px), one thread, 21 rounds of ABBA pairs: about 10 s per network on this 2-core machine,
about 20 minutes in all (the training steps of the reference are timed again for each network, as
the interleaving asks).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mrla_nas.analysis.benchmark_table import LATENCY_COLUMNS, load_table  # noqa: E402
from mrla_nas.arch import arch_from_dict  # noqa: E402
from mrla_nas.cost.latency import device_label, measure_latency  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--out", help="default: the table itself")
    ap.add_argument("--mode", choices=["train_step", "inference"], default="train_step")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    table = load_table(args.table)
    space = table.space
    settings = dict(mode=args.mode, batch_size=space.proxy["batch_size"], resolution=space.proxy["resolution"],
                    threads=args.threads, device="cpu", warmup=3, rounds=args.rounds, metric="ratio")
    nets = table.networks()
    found = {}
    t0 = time.perf_counter()
    for i, row in enumerate(nets.itertuples(index=False), start=1):
        arch = arch_from_dict(json.loads(row.arch))
        found[row.key] = measure_latency(arch, space.latency_reference(), settings).to_dict()
        if i % 10 == 0 or i == len(nets):
            print(f"{i}/{len(nets)} networks timed ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = table.rows.drop(columns=[c for c in table.rows.columns if c.startswith("latency_")])
    for c in LATENCY_COLUMNS:
        rows[f"latency_{c}"] = [found[k][c] for k in rows["key"]]
    provenance = dict(table.provenance, latency=dict(settings, device=device_label("cpu"),
                                                     command=" ".join(["python", *sys.argv]),
                                                     date=time.strftime("%Y-%m-%d %H:%M:%S%z"),
                                                     seconds=round(time.perf_counter() - t0)))
    out = Path(args.out or args.table)
    with open(out, "w") as f:
        f.write("# mrla-nas tabular benchmark: one row per (network, seed, epoch); provenance below (JSON)\n")
        f.write("# " + json.dumps(provenance, sort_keys=True, default=str) + "\n")
        rows.to_csv(f, index=False)
    ratios = sorted(v["ratio"] for v in found.values())
    print(f"wrote {out}: latency ratios {ratios[0]:.3f} .. {ratios[-1]:.3f} (median {ratios[len(ratios) // 2]:.3f})")


if __name__ == "__main__":
    main()
