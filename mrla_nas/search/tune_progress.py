"""What the driver does as trials end: the record of a worker that died, ``trials.csv`` kept current,
and the progress line (trials done/total, running, failed, front size, hypervolume).

One updating line on a terminal; plain lines (one per finished trial) where output is a file or a
CI log. ``trials.csv`` is rewritten atomically after every finished trial, so a notebook's
``pandas.read_csv`` or ``tail -f`` sees the search as it goes.
"""
from __future__ import annotations

import sys
import time

from ray.tune import Callback

from ..objectives.pareto import pareto
from ..rundir.files import mark_record, read_record
from ..rundir.records import COMPLETE, FAILED, INFEASIBLE, RUNNING, STOPPED, WORKER_DIED
from ..rundir.trials_table import TrialsTable


def _death_reason(trial) -> str:
    """The last line of what Ray says about an errored trial (a worker killed by a signal, exit code...)."""
    try:
        error = trial.get_error()
    except Exception:  # the error file may be unreadable; the record still says the trial failed
        error = None
    lines = [ln.strip() for ln in str(error or "").splitlines() if ln.strip()]
    return (lines[-1] if lines else "the trial's worker process died")[:500]


def time_left(elapsed: float, finished_here: int, remaining: int) -> str:
    """`` ~N min left`` at this session's pace so far (the machine it runs on, with its start-up),
    or nothing before a trial has finished here or after the last.

    >>> time_left(120.0, 4, 6), time_left(10.0, 0, 6), time_left(50.0, 3, 0)
    ('  ~3 min left', '', '')
    """
    if finished_here <= 0 or remaining <= 0:
        return ""
    seconds = elapsed / finished_here * remaining
    return f"  ~{seconds / 60:.0f} min left" if seconds >= 90 else f"  ~{seconds:.0f} s left"


class ProgressCallback(Callback):
    def __init__(self, run_dir, target: int, space, enabled: bool = True, on_first_trial=None):
        self.run_dir, self.target, self.space, self.enabled = run_dir, target, space, enabled
        self.running = 0
        self.finished_here = 0  # trials this session saw end: its pace, for the time left
        self.t0 = time.time()
        self.last = ""
        self.on_first_trial = on_first_trial  # e.g. record Ray's worker processes once they exist
        self.table = TrialsTable(run_dir)
        self.notes = set()  # each trial-placement note once (auto on a GPU share without CUDA)

    def _line(self, df) -> str:
        if df.empty:
            return f"trials 0/{self.target}"
        done = int(df["status"].isin([COMPLETE, STOPPED, INFEASIBLE, FAILED]).sum())
        failed = int((df["status"] == FAILED).sum())
        infeasible = int((df["status"] == INFEASIBLE).sum())
        front, hv, _, _ = pareto(df, self.space.objectives, self.space.constraints)
        elapsed = time.time() - self.t0
        return (f"trials {done}/{self.target}  running {self.running}  failed {failed}  over budget {infeasible}  "
                f"front {len(front)}  hypervolume {hv:.4f}  [{elapsed:.0f}s"
                f"{time_left(elapsed, self.finished_here, self.target - done).rstrip()}]")

    def _refresh(self) -> None:
        df = self.table.write_csv()
        if not self.enabled:
            return
        line = self._line(df)
        # sys.stdout is looked up at each write, not stored: Ray pickles its callbacks
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

    def on_trial_result(self, iteration, trials, trial, result, **info):
        note = result.get("device_note")
        if note and note not in self.notes:
            self.notes.add(note)
            print(f"mrla-nas: {note}", file=sys.stderr)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self.finished_here += 1
        self._refresh()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self.finished_here += 1
        number = trial.config.get("trial_number")
        if number is not None:
            rec = read_record(self.run_dir, number)
            if rec is None or rec.get("status") == RUNNING:  # died without a word (os._exit, a signal)
                mark_record(self.run_dir, number, status=FAILED, error=f"{WORKER_DIED}: {_death_reason(trial)}")
            rec = read_record(self.run_dir, number) or {}
            print(f"mrla-nas: trial {number} failed: {rec.get('error')}", file=sys.stderr)
        self._refresh()

    def finish(self) -> None:
        self.table.write_csv()
        if self.enabled and sys.stdout.isatty() and self.last:
            sys.stdout.write("\n")
            sys.stdout.flush()
