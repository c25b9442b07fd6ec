"""What to propose next: the decisions of a search, as plain code on an Optuna study.

The live Ray search (:mod:`~mrla_nas.search.tune_searcher`) and the table replay
(:mod:`~mrla_nas.analysis.replay`) drive the same :class:`Proposer`, so both take the same decisions on the same results:

- a network already evaluated (same canonical key) that the sampler proposes again is told its
  recorded outcome at once, and the sampler is asked again: it does not use a trial of the budget;
- a network proposed while it is being trained waits for that result (its Optuna trial stays open
  and is told with the original) instead of being trained twice;
- when every distinct network of the space has been evaluated or is in flight, :meth:`propose`
  returns None: the search has evaluated them all and stops. A sampler that keeps proposing known
  networks is helped after ``patience`` such proposals in a row: an unseen network is enqueued.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import optuna

from ..arch import ArchConfig, arch_from_dict
from ..rundir.study_attrs import (ARCH, DUPLICATE_OF, FLOPS, LATENCY, PARAMS, PARTIAL_ACCURACY, STOPPED_EPOCH,
                                  interrupted_trials, is_duplicate, is_interrupted)
from ..space import SearchSpace

COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


@dataclass
class Proposal:
    """A network to evaluate: its Optuna trial number, config and cost (measured before training)."""

    number: int
    arch: ArchConfig
    flops: int
    params: int
    feasible: bool
    latency: Optional[Dict[str, float]] = None  # ms, reference_ms, ratio, spread, rounds (where measured)
    latency_value: Optional[float] = None        # the objective's value (the ratio, or ms)

    def config(self) -> dict:
        """What a Ray trial receives."""
        return {"arch": self.arch.to_dict(), "flops": self.flops, "params": self.params,
                "feasible": self.feasible, "trial_number": self.number, "latency": self.latency,
                "latency_value": self.latency_value}


@dataclass
class Outcome:
    """How a network's evaluation ended, as Optuna is told it: ``values`` for COMPLETE; PRUNED (over
    budget, or stopped early: then ``stopped_epoch`` and the accuracy it had, ``partial_accuracy``,
    go to the trial's user attributes, never its values) or FAIL without values."""

    state: optuna.trial.TrialState
    values: Optional[List[float]] = None
    stopped_epoch: Optional[int] = None
    partial_accuracy: Optional[float] = None


class Proposer:
    """Ask ``study`` for networks of ``space``, one distinct network at a time.

    ``measure(arch) -> (flops, params)`` counts a network's cost (the live search uses fvcore, the
    replay its table); ``measure_latency(arch) -> dict`` times it where latency is an objective (the
    live search: :mod:`~mrla_nas.cost.latency`; the replay: its table). ``tell(number, outcome)`` tells
    Optuna (default: ``study.tell``); the live searcher passes its own, which reports a refused tell.
    """

    def __init__(self, study: optuna.Study, space: SearchSpace, measure: Callable[[ArchConfig], Tuple[int, int]],
                 tell: Optional[Callable[[int, Outcome], None]] = None, patience: int = 25, seed: int = 0,
                 measure_latency: Optional[Callable[[ArchConfig], Dict[str, float]]] = None):
        self.study, self.space, self.measure = study, space, measure
        self.measure_latency = measure_latency
        self.tell = tell or self._tell
        self.patience = patience
        self.rng = random.Random(seed)
        self.known: Dict[str, Outcome] = {}           # key -> how its evaluation ended
        self.in_flight: Dict[str, int] = {}           # key -> the trial training it
        self.waiting: Dict[str, List[int]] = {}       # key -> trials parked on it
        self.proposed: Dict[str, int] = {}            # key -> how often the sampler proposed it
        self.open: Dict[int, optuna.Trial] = {}        # trial number -> its Trial, until told
        self._size = space.size()
        self._load_history()

    # ---- what the study already holds (a resumed search) -----------------------------------------
    def _load_history(self) -> None:
        marked = interrupted_trials(self.study)
        for t in self.study.get_trials(deepcopy=False, states=(COMPLETE, PRUNED, FAIL)):
            arch = t.user_attrs.get(ARCH)
            if arch is None or is_interrupted(t, marked) or is_duplicate(t):
                continue
            key = arch_from_dict(arch).key()
            self.known.setdefault(key, Outcome(t.state, list(t.values) if t.state == COMPLETE else None))
        for t in self.study.get_trials(deepcopy=False):
            arch = t.user_attrs.get(ARCH)
            if arch is not None and not is_interrupted(t, marked):
                key = arch_from_dict(arch).key()
                self.proposed[key] = self.proposed.get(key, 0) + 1

    def exhausted(self) -> bool:
        """Every distinct network of the space evaluated or being evaluated."""
        return len(self.known) + len(self.in_flight) >= self._size

    # ---- proposing ----------------------------------------------------------------------------
    def propose(self) -> Optional[Proposal]:
        """The next network to evaluate, or None when the space holds no network not yet evaluated."""
        repeats = 0
        while not self.exhausted():
            if repeats >= self.patience:  # the sampler is stuck on known networks: give it a new one
                self._enqueue_unseen()
                repeats = 0
            trial = self.study.ask()
            self.open[trial.number] = trial
            arch = self.space.sample(trial)
            key = arch.key()
            self.proposed[key] = self.proposed.get(key, 0) + 1
            flops, params = self.measure(arch)
            feasible = self._record_cost(trial, arch, flops, params)
            latency = None
            if self.measure_latency is not None and key not in self.known:  # a known one has its outcome
                latency = self.measure_latency(arch)
                trial.set_user_attr(LATENCY, latency)
            if key in self.known:
                trial.set_user_attr(DUPLICATE_OF, key)
                self._annotate(trial.number, self.known[key])
                self.tell(trial.number, self.known[key])
                self.open.pop(trial.number, None)
                repeats += 1
                continue
            if key in self.in_flight:
                trial.set_user_attr(DUPLICATE_OF, key)
                self.waiting.setdefault(key, []).append(trial.number)
                repeats += 1
                continue
            self.in_flight[key] = trial.number
            value = None if latency is None else latency[self.space.latency["metric"]]
            return Proposal(trial.number, arch, flops, params, feasible, latency, value)
        return None

    def _record_cost(self, trial, arch: ArchConfig, flops: int, params: int) -> bool:
        c = self.space.constraints
        violation = [flops - c["max_flops"] if c["max_flops"] else -1.0,
                     params - c["max_params"] if c["max_params"] else -1.0]
        trial.set_constraint("flops", violation[0])  # Optuna's constrained samplers rank infeasible ones last
        trial.set_constraint("params", violation[1])
        trial.set_user_attr(ARCH, arch.to_dict())
        trial.set_user_attr(FLOPS, flops)
        trial.set_user_attr(PARAMS, params)
        return max(violation) <= 0

    def _enqueue_unseen(self) -> None:
        if self._size > 100_000:  # a space this large is not exhausted by a sampler's repeats
            return
        seen = set(self.known) | set(self.in_flight)
        unseen = [a for a in self.space.enumerate() if a.key() not in seen]
        if unseen:
            self.study.enqueue_trial(self.space.params_for(self.rng.choice(unseen)))

    # ---- results ------------------------------------------------------------------------------
    def finish(self, number: int, key: str, outcome: Outcome) -> List[int]:
        """The evaluation of trial ``number`` (network ``key``) ended with ``outcome``: tell it, and every
        trial parked on the same network. Returns the numbers told."""
        self.in_flight.pop(key, None)
        self.known[key] = outcome
        told = [number, *self.waiting.pop(key, [])]
        for n in told:
            self._annotate(n, outcome)
            self.tell(n, outcome)
            self.open.pop(n, None)
        return told

    def _annotate(self, number: int, outcome: Outcome) -> None:
        # Optuna cannot report intermediate values in a multi-objective study: a stopped trial's
        # partial result is a user attribute, which no sampler mistakes for a final value
        trial = self.open.get(number)
        if trial is not None and outcome.stopped_epoch is not None:
            trial.set_user_attr(STOPPED_EPOCH, outcome.stopped_epoch)
            trial.set_user_attr(PARTIAL_ACCURACY, outcome.partial_accuracy)

    def _tell(self, number: int, outcome: Outcome) -> None:
        if outcome.state == COMPLETE:
            self.study.tell(number, outcome.values)
        else:
            self.study.tell(number, state=outcome.state)
