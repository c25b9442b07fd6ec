"""The trials table (``trials.csv``): one row per network, from the study and the trial records."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import pandas as pd

from ..arch import arch_from_dict
from .files import check_run_dir, record_path
from .records import COMPLETE, FAILED, INFEASIBLE, INTERRUPTED, RUNNING, STOPPED, parse_record
from .study import open_study
from .study_attrs import (ARCH, DUPLICATE_OF, FLOPS, LATENCY, PARAMS, interrupted_trials, is_duplicate,
                          is_interrupted)

if TYPE_CHECKING:
    import optuna


def _status(t, rec: Dict[str, Any], marked: Dict[int, Any]) -> Optional[str]:
    """A trial's status in the table, from the study's state and its record (None: a queued trial)."""
    import optuna

    status = rec.get("status")
    if t.state == optuna.trial.TrialState.FAIL:
        return INTERRUPTED if is_interrupted(t, marked) else FAILED
    if t.state == optuna.trial.TrialState.WAITING:
        return None
    if status is None:
        return RUNNING
    if status == RUNNING and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        # the scheduler ended it: early (stopped, PRUNED for Optuna) or right after its last epoch
        return COMPLETE if rec.get("fidelity", 0.0) >= 1.0 else STOPPED
    return status


def _row(t, rec: Dict[str, Any], marked: Dict[int, Any]) -> Optional[Dict[str, Any]]:
    """One trials-table row from an Optuna trial and its record (None: a queued trial, not yet a row)."""
    status = _status(t, rec, marked)
    if status is None:
        return None
    arch_dict = rec.get(ARCH) or t.user_attrs.get(ARCH) or marked.get(t.number)
    row = {"trial_id": t.number, "status": status}
    if arch_dict:
        arch = arch_from_dict(arch_dict)
        canonical = arch.canonical()
        row["summary"] = arch.summary()
        for i, s in enumerate(canonical.stages, start=1):
            row[f"stage{i}_form"] = s.form
            row[f"stage{i}_heads"] = s.heads
            row[f"stage{i}_reduction"] = s.reduction
        row["key"] = arch.key()
        # which backbone choice (everything but the stages): explain compares MRLA within one
        row["backbone"] = json.dumps({k: v for k, v in canonical.to_dict().items() if k != "stages"},
                                     sort_keys=True, separators=(",", ":"))
    row["params"] = rec.get("params", t.user_attrs.get(PARAMS))
    row["flops"] = rec.get("flops", t.user_attrs.get(FLOPS))
    latency = rec.get("latency") or t.user_attrs.get(LATENCY)
    if latency:  # the objective's value, and what it was measured from
        row["latency"] = rec.get("latency_value")
        row["latency_ms"], row["latency_reference_ms"] = latency["ms"], latency["reference_ms"]
        row["latency_ratio"], row["latency_spread"] = latency["ratio"], latency["spread"]
    hist = rec.get("history", [])
    for h in hist:
        row[f"acc_epoch_{h['epoch']}"] = h["val_accuracy"]
    row["accuracy"] = hist[-1]["val_accuracy"] if hist and status in (COMPLETE, STOPPED) else None
    row["accuracy_sd"] = hist[-1].get("val_accuracy_sd", 0.0) if row["accuracy"] is not None else None
    row["seeds"] = len(hist[-1].get("seeds") or [0]) if hist else None
    row["fidelity"] = rec.get("fidelity", 0.0)
    row["error"] = rec.get("error") or t.user_attrs.get("error")
    row["wall_s"] = rec.get("wall_s")
    row["train_s"] = rec.get("train_s")
    row["device"] = rec.get("device")  # where it trained: 'cpu' or 'cuda:0 (GPU model)'
    return row


# which attempt's row stands for a network tried more than once: the most settled
_SETTLED = {COMPLETE: 0, STOPPED: 1, INFEASIBLE: 2, FAILED: 3, RUNNING: 4, INTERRUPTED: 5}


def _one_row_per_network(df: pd.DataFrame, proposed: Dict[str, int]) -> pd.DataFrame:
    """Fold the attempts at one network (an interrupted one and its re-run) into one row, the settled
    attempt's; ``attempts`` counts them, ``proposed`` how often the sampler proposed the network.
    Attempts killed before their network was sampled have no key and keep a row each."""
    if df.empty:
        return df
    if "key" not in df:
        df["key"] = None
    df = df.sort_values("trial_id").reset_index(drop=True)
    keyed = df[df["key"].notna()].copy()
    keyed["_rank"] = keyed["status"].map(_SETTLED).fillna(9)
    attempts = keyed.groupby("key")["trial_id"].count()
    keep = keyed.sort_values(["_rank", "trial_id"]).drop_duplicates("key").drop(columns="_rank")
    keep["attempts"] = keep["key"].map(attempts).astype(int)
    keep["proposed"] = [int(attempts[k]) + proposed.get(k, 0) for k in keep["key"]]
    out = pd.concat([keep, df[df["key"].isna()].assign(attempts=1, proposed=1)])
    return out.sort_values("trial_id").reset_index(drop=True)


class TrialsTable:
    """The trials table of a run directory, kept up to date incrementally.

    One row per network: the trial that evaluated it, status, config columns, key, params, FLOPs,
    accuracy per epoch and final (mean over seeds, with its sd), fidelity, error, wall time,
    ``attempts`` (more than 1 after an interrupted session) and ``proposed`` (how often the sampler
    proposed it; re-proposals are answered from the record). Status: complete, stopped
    (early-stopped), infeasible, failed, interrupted (the session was killed; its config was queued
    again), running.

    Holding one instance (as the search's progress callback does) re-reads only what changed: the
    journal from where it stopped (Optuna's JournalStorage replays incrementally) and the records
    whose files changed, so refreshing after each trial does not re-read the whole run.
    """

    def __init__(self, run_dir: Path, study: Optional["optuna.Study"] = None):
        self.run_dir = Path(run_dir)
        self._study = study
        self._rows: Dict[int, tuple] = {}  # number -> (stamp, row)

    def __getstate__(self):  # Ray pickles callbacks: the study (file handles, locks) stays behind
        return dict(self.__dict__, _study=None)

    def frame(self) -> pd.DataFrame:
        if self._study is None:
            check_run_dir(self.run_dir)
            self._study = open_study(self.run_dir)
        rows: List[Dict[str, Any]] = []
        proposed: Dict[str, int] = {}
        marked = interrupted_trials(self._study)
        for t in self._study.get_trials(deepcopy=False):
            if is_duplicate(t):  # a re-proposal, answered from the original: counted there
                proposed[t.user_attrs[DUPLICATE_OF]] = proposed.get(t.user_attrs[DUPLICATE_OF], 0) + 1
                continue
            path = record_path(self.run_dir, t.number)
            try:
                st = path.stat()
                mtime = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                mtime = None
            stamp = (t.state, len(t.user_attrs), mtime, t.number in marked)
            cached = self._rows.get(t.number)
            if cached is None or cached[0] != stamp:
                rec = parse_record(path, t.number) if mtime is not None else {}
                cached = self._rows[t.number] = (stamp, _row(t, rec, marked))
            if cached[1] is not None:
                rows.append(cached[1])
        df = _one_row_per_network(pd.DataFrame(rows), proposed)
        if not df.empty:
            for col in df.columns:
                if col.endswith(("_heads", "_reduction")) or col in ("params", "flops"):
                    df[col] = df[col].astype("Int64")
        return df

    def write_csv(self) -> pd.DataFrame:
        """Refresh and write ``trials.csv`` atomically (a reader never sees half a file)."""
        df = self.frame()
        path = self.run_dir / "trials.csv"
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=".tmp-trials-")
        with os.fdopen(fd, "w") as f:
            df.to_csv(f, index=False)
        os.replace(tmp, path)
        return df


def trials_table(run_dir: Path) -> pd.DataFrame:
    """The run's trials table (see :class:`TrialsTable`), read afresh."""
    return TrialsTable(run_dir).frame()


def write_trials_csv(run_dir: Path) -> pd.DataFrame:
    return TrialsTable(run_dir).write_csv()
