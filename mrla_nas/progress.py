"""Search progress: trials done/total, running, failed, front size, hypervolume.

One updating line on a terminal; plain lines (one per finished trial) where output is a file or a
CI log.
"""
from __future__ import annotations

import sys
import time

from ray.tune import Callback

from .pareto import pareto


class ProgressCallback(Callback):
    def __init__(self, run_dir, target: int, space, enabled: bool = True, on_first_trial=None):
        self.run_dir, self.target, self.space, self.enabled = run_dir, target, space, enabled
        self.running = 0
        self.t0 = time.time()
        self.last = ""
        self.on_first_trial = on_first_trial  # e.g. record Ray's worker processes once they exist

    def _line(self) -> str:
        from .run_dir import trials_table

        df = trials_table(self.run_dir)
        if df.empty:
            return f"trials 0/{self.target}"
        done = int(df["status"].isin(["complete", "stopped", "infeasible", "failed"]).sum())
        failed = int((df["status"] == "failed").sum())
        infeasible = int((df["status"] == "infeasible").sum())
        front, hv, _, _ = pareto(df, max_flops=self.space.constraints["max_flops"])
        return (f"trials {done}/{self.target}  running {self.running}  failed {failed}  over budget {infeasible}  "
                f"front {len(front)}  hypervolume {hv:.4f}  [{time.time() - self.t0:.0f}s]")

    # sys.stdout is looked up at each write, not stored: Ray pickles its callbacks
    def _show(self) -> None:
        if not self.enabled:
            return
        line = self._line()
        if sys.stdout.isatty():
            sys.stdout.write("\r" + line.ljust(len(self.last)))
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self.last = line

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += 1
        if self.on_first_trial is not None:
            self.on_first_trial(self.run_dir)
            self.on_first_trial = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self._show()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self._show()

    def finish(self) -> None:
        if self.enabled and sys.stdout.isatty() and self.last:
            sys.stdout.write("\n")
            sys.stdout.flush()
