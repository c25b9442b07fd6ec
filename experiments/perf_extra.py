"""Where MRLA's extra time goes inside the proxy step, function by function (Linux `perf`).

    .venv/bin/python experiments/perf_extra.py light base

The torch profiler (bench_proxy_speed.py --profile) sees operators; this sees the machine code
under them: each C++ kernel, libc's copies and allocations, the Python interpreter. It samples
`bench_proxy_speed.py --train NAME` (the search's training step, one thread) for no MRLA and for
each NAME, and prints the functions ordered by the extra milliseconds per step they cost. Each
network runs twice, for --short and for --steps steps, and the difference of the two is divided by
the difference of the steps: start-up (imports, building the networks, the warm-up) cancels.
Needs `perf` (linux-perf) and permission
to sample (perf_event_paranoid <= 2 for one's own processes).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def short(symbol: str) -> str:
    """A readable function name: no argument lists, lambdas or namespaces of the standard library."""
    symbol = re.sub(r"\[JIT\] tid \d+", "[JIT]", symbol)
    if symbol.startswith("0x"):
        return "(unresolved: JIT-compiled code, e.g. oneDNN)"
    symbol = symbol.replace("(anonymous namespace)::", "")
    loop = re.search(r"VectorizedLoop2d<at::native::(?:\w+::)*?(\w+_kernel)", symbol)
    if loop:  # TensorIterator's elementwise loops: name the operator's kernel
        return f"elementwise {loop.group(1)}"
    depth, out = 0, []
    for ch in symbol:  # drop everything inside (...) at any depth
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).replace("::{lambda#1}::operator", "").strip()[:90]


def cpu_ms(name: str, steps: int, freq: int, tmp: Path) -> dict:
    """CPU milliseconds per (library, function) over the whole run: its samples, weighted so that
    they add up to the run's measured CPU time (the kernel may throttle the sampling rate)."""
    data = tmp / f"{name.replace(':', '_')}.data"
    cmd = [sys.executable, str(ROOT / "experiments" / "bench_proxy_speed.py"), "--train", name, "--steps", str(steps)]
    before = os.times()
    subprocess.run(["perf", "record", "-q", "-F", str(freq), "-o", str(data), "--", *cmd], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = os.times()
    cpu = 1000 * (after.children_user + after.children_system - before.children_user - before.children_system)
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,symbol", "-g", "none",
                             "-n", "--stdio"], check=True, capture_output=True, text=True).stdout
    out = defaultdict(int)
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[[.k]\]\s+(.*?)\s*$", line)
        if m:
            out[(m.group(2), short(m.group(3)))] += int(m.group(1))
    total = sum(out.values())
    return {k: v * cpu / total for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("networks", nargs="+", choices=["light", "base", "light:plain", "base:plain"])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--short", type=int, default=20, help="steps of the run that is subtracted")
    ap.add_argument("--freq", type=int, default=2000, help="samples per second")
    ap.add_argument("--top", type=int, default=18)
    args = ap.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf_extra.py: `perf` is not installed (Debian: apt install linux-perf)")
    sys.path.insert(0, str(ROOT))
    from mrla_nas.kernels import cpu_kernels

    cpu_kernels()  # build the kernels now, if they need it, so that the compiler is not sampled
    if args.steps <= args.short:
        sys.exit("perf_extra.py: --steps must be larger than --short")
    with tempfile.TemporaryDirectory() as tmp:

        def per_step(name: str) -> dict:
            long, short_run = (cpu_ms(name, n, args.freq, Path(tmp)) for n in (args.steps, args.short))
            return {k: (long.get(k, 0) - short_run.get(k, 0)) / (args.steps - args.short)
                    for k in set(long) | set(short_run)}

        base = per_step("none")
        print(f"none: {sum(base.values()):.1f} ms of CPU per step")
        for name in args.networks:
            run = per_step(name)
            extra = sum(run.values()) - sum(base.values())
            print(f"\n{name}: {sum(run.values()):.1f} ms per step, {extra:+.1f} over none")
            print(f"  {'extra ms':>8s} {'share':>6s}  library / function")
            rows = sorted(((run.get(k, 0) - base.get(k, 0), k) for k in set(base) | set(run)), reverse=True)
            for delta, (dso, fn) in rows[:args.top]:
                print(f"  {delta:8.2f} {delta / max(extra, 1e-9):6.1%}  {dso}: {fn}")


if __name__ == "__main__":
    main()
