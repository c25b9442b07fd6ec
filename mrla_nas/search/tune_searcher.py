"""Ray Tune's view of the Optuna study: a ``ray.tune.search.Searcher`` that proposes through the
search's :class:`~mrla_nas.search.proposer.Proposer` (distinct networks, cost measured before scheduling)
and tells the study what each trial gave.

Written on Optuna's public ask/tell API rather than on Ray's ``OptunaSearch``, whose bookkeeping is
private (``_ot_trials``, ``_ot_study``), which cannot skip a re-proposed network, and which logs and
swallows a failed tell: here a tell that Optuna refuses fails loudly, the trial is recorded
``failed`` with the reason (in its record and in Optuna) and the search goes on.
"""
from __future__ import annotations

import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import optuna
from ray.tune.search import Searcher

from ..arch import ArchConfig
from ..cost.flops import measure_arch
from ..rundir.files import mark_record
from ..rundir.records import FAILED
from ..space import SearchSpace
from .proposer import COMPLETE, FAIL, PRUNED, Outcome, Proposer

logger = logging.getLogger("mrla_nas.search")


def fvcore_cost(space: SearchSpace):
    """``measure(arch) -> (flops, params)`` with fvcore at the space's input (cached by canonical key)."""
    def measure(arch: ArchConfig) -> Tuple[int, int]:
        cost = measure_arch(arch, (1, arch.in_chans, *space.input_shape()[2:]), space.flops_convention)
        return cost.flops, cost.params
    return measure


def latency_cost(space: SearchSpace):
    """``measure(arch) -> dict`` of its latency against the space's reference network (its first
    backbone choice without MRLA), where latency is an objective (None otherwise). Measured here, in the driver: every network of a run is timed on the
    same machine, whichever node trains it (cost/latency.py)."""
    if "latency" not in space.objectives:
        return None
    from ..cost.latency import measure_latency

    def measure(arch: ArchConfig) -> Dict[str, float]:
        return measure_latency(arch, space.latency_reference(), space.latency).to_dict()
    return measure


def outcome_of(space: SearchSpace, result: Optional[Dict], error: bool) -> Outcome:
    """A Ray trial's last result as what Optuna is told: a trial that ended before the proxy's last
    epoch was stopped by the scheduler, and is PRUNED (its partial accuracy kept apart)."""
    if result and result.get("infeasible"):
        return Outcome(PRUNED)
    values = [result.get(name) for name in space.objective_names()] if result and not error else None
    if values is None or any(v is None for v in values):
        return Outcome(FAIL)
    if int(result.get("epoch", space.proxy["epochs"])) < space.proxy["epochs"]:
        return Outcome(PRUNED, stopped_epoch=int(result["epoch"]), partial_accuracy=float(result["accuracy"]))
    return Outcome(COMPLETE, [float(v) for v in values])


class StudySearcher(Searcher):
    """Propose from ``study`` and tell it each Ray trial's outcome:

    - an over-budget network (never trained) is told ``PRUNED``; an errored trial ``FAIL``;
    - a finished trial its objective values; if Optuna refuses them (a wrong count, a NaN), the trial
      is told ``FAIL``, its record says why, and one line goes to stderr;
    - re-proposals of known networks never reach Ray (see :class:`~mrla_nas.search.proposer.Proposer`).
    """

    def __init__(self, space: SearchSpace, study: optuna.Study, run_dir: Path, measure=None):
        super().__init__(metric=space.objective_names(), mode=list(space.objectives.values()))
        self.space, self.study, self.run_dir = space, study, Path(run_dir)
        self.proposer = Proposer(study, space, measure or fvcore_cost(space), tell=self._tell, seed=space.seed,
                                 measure_latency=latency_cost(space))
        self.running: Dict[str, Tuple[int, str]] = {}  # Ray trial id -> (Optuna trial number, network key)
        self.tell_failures = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the objectives are the space's; Tune's own metric/mode are not used

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        proposal = self.proposer.propose()
        if proposal is None:
            return Searcher.FINISHED  # every distinct network of the space has been evaluated
        self.running[trial_id] = (proposal.number, proposal.arch.key())
        return proposal.config()

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if trial_id not in self.running:
            return
        number, key = self.running.pop(trial_id)
        self.proposer.finish(number, key, outcome_of(self.space, result, error))

    def _tell(self, number: int, outcome: Outcome) -> None:
        if outcome.state != COMPLETE:
            self.study.tell(number, state=outcome.state)
            return
        values, problem = outcome.values, None
        try:
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"objective values {values} are not all finite")
            # Optuna turns some refusals (a wrong number of values) into a warning and a FAIL state
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                told = self.study.tell(number, values)
            if told.state != COMPLETE:
                problem = "; ".join(str(w.message) for w in caught) or f"the trial ended {told.state.name}"
        except Exception as e:  # Optuna refused the values: the sampler must not silently lose them
            problem = f"{type(e).__name__}: {e}"
            if self.study.get_trials(deepcopy=False)[number].state == optuna.trial.TrialState.RUNNING:
                self.study.tell(number, state=FAIL)
        if problem is not None:
            self.tell_failures += 1
            reason = f"Optuna did not accept the result {values}: {problem}".splitlines()[0][:500]
            mark_record(self.run_dir, number, status=FAILED, error=reason)
            print(f"mrla-nas: trial {number} recorded failed: {reason}", file=sys.stderr)

    def save(self, checkpoint_path: str) -> None:
        # Nothing to save for Tune: the study journal in the run directory is the searcher's state.
        Path(checkpoint_path).write_text('{"state": "study.journal"}')

    def restore(self, checkpoint_path: str) -> None:
        pass
