"""Ray Tune's view of the Optuna study: a ``ray.tune.search.Searcher`` that asks the study for a
network, measures its cost before it is scheduled, and tells the study what the trial gave.

Written on Optuna's public ask/tell API rather than on Ray's ``OptunaSearch``, whose bookkeeping is
private (``_ot_trials``, ``_ot_study``) and which logs and swallows a failed tell: here a tell that
Optuna refuses fails loudly, the trial is recorded ``failed`` with the reason (in its record and in
Optuna) and the search goes on.
"""
from __future__ import annotations

import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import optuna
from ray.tune.search import Searcher

from .run_dir import mark_record
from .space import SearchSpace

logger = logging.getLogger("mrla_nas.search")


def measured_config(space: SearchSpace, trial: optuna.trial.BaseTrial) -> Dict[str, Any]:
    """Sample an architecture through ``trial``, count its cost and record both on the trial: the
    config a Ray trial receives. Over-budget networks are marked with Optuna constraints (<= 0 is
    feasible), which constrained samplers rank last."""
    from .cost import measure_arch

    arch = space.sample(trial)
    cost = measure_arch(arch, space.input_shape(), space.flops_convention)
    c = space.constraints
    violation = [cost.flops - c["max_flops"] if c["max_flops"] else -1.0,
                 cost.params - c["max_params"] if c["max_params"] else -1.0]
    trial.set_constraint("flops", violation[0])  # Optuna's constrained samplers rank infeasible trials last
    trial.set_constraint("params", violation[1])
    trial.set_user_attr("arch", arch.to_dict())
    trial.set_user_attr("flops", cost.flops)
    trial.set_user_attr("params", cost.params)
    return {"arch": arch.to_dict(), "flops": cost.flops, "params": cost.params,
            "feasible": max(violation) <= 0, "trial_number": trial.number}


class StudySearcher(Searcher):
    """Propose from ``study`` (asked through its public API) and tell it each Ray trial's outcome.

    - an over-budget network (never trained) is told ``PRUNED``;
    - an errored trial is told ``FAIL``;
    - a finished trial is told its objective values; if Optuna refuses them (a wrong count, a NaN),
      the trial is told ``FAIL``, its record says why, and one line goes to stderr.
    """

    def __init__(self, space: SearchSpace, study: optuna.Study, run_dir: Path):
        super().__init__(metric=space.objective_names(), mode=list(space.objectives.values()))
        self.space, self.study, self.run_dir = space, study, Path(run_dir)
        self.numbers: Dict[str, int] = {}  # Ray trial id -> Optuna trial number
        self.tell_failures = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the objectives are the space's; Tune's own metric/mode are not used

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        trial = self.study.ask()
        self.numbers[trial_id] = trial.number
        return measured_config(self.space, trial)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        number = self.numbers.pop(trial_id, None)
        if number is None:
            return
        if result and result.get("infeasible"):
            self.study.tell(number, state=optuna.trial.TrialState.PRUNED)
            return
        values = [result.get(name) for name in self.space.objective_names()] if result and not error else None
        if values is None or any(v is None for v in values):
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            return
        problem = None
        try:
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"objective values {values} are not all finite")
            # Optuna turns some refusals (a wrong number of values) into a warning and a FAIL state
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                told = self.study.tell(number, values)
            if told.state != optuna.trial.TrialState.COMPLETE:
                problem = "; ".join(str(w.message) for w in caught) or f"the trial ended {told.state.name}"
        except Exception as e:  # Optuna refused the values: the sampler must not silently lose them
            problem = f"{type(e).__name__}: {e}"
            if self.study.get_trials(deepcopy=False)[number].state == optuna.trial.TrialState.RUNNING:
                self.study.tell(number, state=optuna.trial.TrialState.FAIL)
        if problem is not None:
            self.tell_failures += 1
            reason = f"Optuna did not accept the result {values}: {problem}".splitlines()[0][:500]
            mark_record(self.run_dir, number, status="failed", error=reason)
            print(f"mrla-nas: trial {number} recorded failed: {reason}", file=sys.stderr)

    def save(self, checkpoint_path: str) -> None:
        # Nothing to save for Tune: the study journal in the run directory is the searcher's state.
        Path(checkpoint_path).write_text('{"state": "study.journal"}')

    def restore(self, checkpoint_path: str) -> None:
        pass
