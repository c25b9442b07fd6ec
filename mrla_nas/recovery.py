"""Resume bookkeeping: what a killed session left in the study, put right before the next one runs.

Interrupted attempts are listed in the study's user attribute ``interrupted`` ({trial number: the
network's config or None}), through Optuna's public API: a trial's own attributes cannot be set once
its session is gone without Optuna's private storage calls.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import optuna

from .run_dir import interrupted_trials as interrupted
from .run_dir import WORKER_DIED, read_records, record_path, write_json_atomic
from .space import SearchSpace

RUNNING, FAIL, PRUNED = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL,
                         optuna.trial.TrialState.PRUNED)


def is_interrupted(trial: optuna.trial.FrozenTrial, marked: Dict[int, Any]) -> bool:
    return trial.number in marked or bool(trial.user_attrs.get("interrupted"))  # (older runs: a trial attr)


def objective_values(space: SearchSpace, rec: Dict[str, Any]) -> list:
    """A finished record's values in the study's order (accuracy, flops[, params])."""
    have = {"accuracy": rec["history"][-1]["val_accuracy"], "flops": rec["flops"], "params": rec["params"]}
    return [have[name] for name in space.objective_names()]


def finished_networks(study: optuna.Study) -> int:
    """Distinct networks evaluated: what a trial budget buys (re-proposals answered from a record and
    interrupted attempts are not counted)."""
    marked = interrupted(study)
    done = (optuna.trial.TrialState.COMPLETE, PRUNED, FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done)
               if not is_interrupted(t, marked) and "duplicate_of" not in t.user_attrs)


def attempted_params(trial: optuna.trial.FrozenTrial) -> Dict[str, Any]:
    """The parameters of the network an attempt was for. A trial made from ``enqueue_trial`` (the
    space's initial placements, validate's chosen networks) holds its whole network from the start,
    but a kill while it was being sampled leaves only the first few in ``trial.params``: queued
    again from those alone, it would come back as another network."""
    # Optuna keeps an enqueued trial's parameters in system_attrs["fixed_params"] (Study.enqueue_trial
    # writes them there and its samplers read them from there; there is no other accessor)
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def recover_interrupted(study: optuna.Study, run_dir: Path, space: SearchSpace) -> int:
    """Trials left RUNNING by a killed session.

    A trial whose record is finished (the kill fell between the worker's last write and Optuna's
    tell) is told now, with its recorded result; a re-proposal parked on a network in flight is
    closed (the network's own attempt is what gets queued again); any other attempt is marked
    interrupted, told FAIL and its config queued again. Returns the number queued again.
    """
    n = 0
    records = read_records(run_dir)
    marked = interrupted(study)
    for t in study.get_trials(deepcopy=False, states=(FAIL,)):
        # a worker that died (its node lost, a `ray stop`, the OOM killer) says nothing of the network:
        # its attempt is retried on resume like an interrupted one; a failure the training raised is kept
        rec = records.get(t.number)
        if (t.number not in marked and "duplicate_of" not in t.user_attrs and rec is not None
                and str(rec.get("error") or "").startswith(WORKER_DIED)):
            marked[t.number] = t.user_attrs.get("arch")
            study.set_user_attr("interrupted", {str(k): v for k, v in marked.items()})
            rec.update(status="interrupted", error=f"{rec['error']}; queued again on resume")
            write_json_atomic(record_path(run_dir, t.number), rec)
            study.enqueue_trial(attempted_params(t), skip_if_exists=False)
            n += 1
    for t in study.get_trials(deepcopy=False, states=(RUNNING,)):
        rec = records.get(t.number)
        if "duplicate_of" in t.user_attrs:
            marked[t.number] = t.user_attrs.get("arch")
            study.tell(t.number, state=FAIL)
            continue
        if rec is not None and rec.get("status") == "complete" and rec.get("history"):
            study.tell(t.number, objective_values(space, rec))
            continue
        if rec is not None and rec.get("status") == "infeasible":
            study.tell(t.number, state=PRUNED)
            continue
        arch, params = t.user_attrs.get("arch"), attempted_params(t)
        if arch is None:  # killed between sampling and the cost measurement: name it by its parameters
            try:
                arch = space.sample(optuna.trial.FixedTrial(params)).to_dict()
            except ValueError:  # killed while sampling a proposal: no full config; Optuna fills the rest
                pass
        marked[t.number] = arch
        study.set_user_attr("interrupted", {str(k): v for k, v in marked.items()})  # before the tell
        study.tell(t.number, state=FAIL)
        if rec is not None:
            rec.update(status="interrupted", error="the search was stopped while this trial ran; queued again")
            write_json_atomic(record_path(run_dir, t.number), rec)
        study.enqueue_trial(params, skip_if_exists=False)
        n += 1
    if marked != interrupted(study):
        study.set_user_attr("interrupted", {str(k): v for k, v in marked.items()})
    return n
