"""The live search's early stopping: a Ray Tune ``TrialScheduler`` that asks the search's
:class:`~mrla_nas.objectives.halving.SuccessiveHalving` rule, the very code the table replay uses."""
from __future__ import annotations

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..objectives.halving import SuccessiveHalving, rung_values


class HalvingScheduler(FIFOScheduler):
    """Stop a trial at a rung when the rule says so (``moasha``: on every objective; ``asha``: on
    accuracy alone). Trials report ``epoch``, ``accuracy``, ``flops``, ``params`` and ``trial_number``."""

    def __init__(self, rule: SuccessiveHalving, space, kind: str):
        super().__init__()
        self.rule, self.space, self.kind = rule, space, kind

    def on_trial_result(self, tune_controller, trial, result):
        if "accuracy" not in result or "epoch" not in result:
            return TrialScheduler.CONTINUE  # an over-budget network's only report
        values = rung_values(self.space, self.kind, result["accuracy"], result["flops"], result["params"],
                             result.get("latency"))
        go_on = self.rule.decide(int(result["trial_number"]), int(result["epoch"]), values)
        return TrialScheduler.CONTINUE if go_on else TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"{self.kind} successive halving, rungs {self.rule.rungs}, eta {self.rule.eta}"
