"""Resume bookkeeping: what a killed session left in the study, put right before the next one runs.

Interrupted attempts are listed in the study's user attribute ``interrupted`` ({trial number: the
network's config or None}; :mod:`~mrla_nas.rundir.study_attrs`), through Optuna's public API: a
trial's own attributes cannot be set once its session is gone without Optuna's private storage calls.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import optuna

from ..space import SearchSpace
from .files import read_records, record_path, write_json_atomic
from .records import COMPLETE, INFEASIBLE, INTERRUPTED, WORKER_DIED
from .study_attrs import ARCH, interrupted_trials, is_duplicate, is_interrupted, mark_interrupted

RUNNING, FAIL, PRUNED = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL,
                         optuna.trial.TrialState.PRUNED)
Marked = Dict[int, Optional[Dict[str, Any]]]  # trial number -> config (or None) of an interrupted attempt


def finished_networks(study: optuna.Study) -> int:
    """Distinct networks evaluated: what a trial budget buys (re-proposals answered from a record and
    interrupted attempts are not counted)."""
    marked = interrupted_trials(study)
    done = (optuna.trial.TrialState.COMPLETE, PRUNED, FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done)
               if not is_interrupted(t, marked) and not is_duplicate(t))


def attempted_params(trial: optuna.trial.FrozenTrial) -> Dict[str, Any]:
    """The parameters of the network an attempt was for. A trial made from ``enqueue_trial`` (the
    space's initial placements, validate's chosen networks) holds its whole network from the start,
    but a kill while it was being sampled leaves only the first few in ``trial.params``: queued
    again from those alone, it would come back as another network."""
    # Optuna keeps an enqueued trial's parameters in system_attrs["fixed_params"] (Study.enqueue_trial
    # writes them there and its samplers read them from there; there is no other accessor);
    # tests/test_private_apis.py fails when Optuna moves them
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def recover_interrupted(study: optuna.Study, run_dir: Path, space: SearchSpace) -> int:
    """Put right what a killed session left: attempts whose worker died, and trials left RUNNING.
    Returns the number of attempts queued again."""
    records = read_records(run_dir)
    marked = interrupted_trials(study)
    n = _retry_dead_workers(study, run_dir, records, marked) + _settle_running(study, run_dir, space, records, marked)
    if marked != interrupted_trials(study):
        mark_interrupted(study, marked)
    return n


def _retry_dead_workers(study: optuna.Study, run_dir: Path, records: Dict[int, Dict[str, Any]],
                        marked: Marked) -> int:
    """A worker that died (its node lost, a `ray stop`, the OOM killer) says nothing of the network: its
    attempt is retried on resume like an interrupted one; a failure the training raised is kept."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(FAIL,)):
        rec = records.get(t.number)
        if (t.number not in marked and not is_duplicate(t) and rec is not None
                and str(rec.get("error") or "").startswith(WORKER_DIED)):
            marked[t.number] = t.user_attrs.get(ARCH)
            mark_interrupted(study, marked)
            rec.update(status=INTERRUPTED, error=f"{rec['error']}; queued again on resume")
            write_json_atomic(record_path(run_dir, t.number), rec)
            study.enqueue_trial(attempted_params(t), skip_if_exists=False)
            n += 1
    return n


def _settle_running(study: optuna.Study, run_dir: Path, space: SearchSpace, records: Dict[int, Dict[str, Any]],
                    marked: Marked) -> int:
    """Trials left RUNNING. One whose record is finished (the kill fell between the worker's last write
    and Optuna's tell) is told now, with its recorded result; a re-proposal parked on a network in
    flight is closed (the network's own attempt is what gets queued again); any other attempt is
    marked interrupted, told FAIL and its config queued again."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(RUNNING,)):
        rec = records.get(t.number)
        if is_duplicate(t):
            marked[t.number] = t.user_attrs.get(ARCH)
            study.tell(t.number, state=FAIL)
            continue
        if rec is not None and rec.get("status") == COMPLETE and rec.get("history"):
            study.tell(t.number, space.objective_values(rec["history"][-1]["val_accuracy"], rec["flops"],
                                                        rec["params"], rec.get("latency_value")))
            continue
        if rec is not None and rec.get("status") == INFEASIBLE:
            study.tell(t.number, state=PRUNED)
            continue
        arch, params = t.user_attrs.get(ARCH), attempted_params(t)
        if arch is None:  # killed between sampling and the cost measurement: name it by its parameters
            try:
                arch = space.sample(optuna.trial.FixedTrial(params)).to_dict()
            except ValueError:  # killed while sampling a proposal: no full config; Optuna fills the rest
                pass
        marked[t.number] = arch
        mark_interrupted(study, marked)  # before the tell
        study.tell(t.number, state=FAIL)
        if rec is not None:
            rec.update(status=INTERRUPTED, error="the search was stopped while this trial ran; queued again")
            write_json_atomic(record_path(run_dir, t.number), rec)
        study.enqueue_trial(params, skip_if_exists=False)
        n += 1
    return n
