"""A search answered from a table instead of trained: the same sampler code and the same
:class:`~mrla_nas.decisions.Proposer` as the live Ray search, with simulated wall time.

``concurrency`` slots run at once, as Ray's trials do: a slot that frees is given the next proposal,
which therefore sees exactly the results finished by then; a trial lasts the training seconds the
table recorded (over the seeds the replay uses). No Ray, no training: 100 repeats of a 40-trial
search take seconds.

>>> table = load_table("experiments/tables/fmnist_resnet20.csv")              # doctest: +SKIP
>>> result = replay(table, trials=40, sampler="tpe", seed=3)                  # doctest: +SKIP
>>> result.hypervolume_curve()[-1]                                            # doctest: +SKIP
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import optuna
import pandas as pd

from .decisions import COMPLETE, PRUNED, Outcome, Proposer, make_sampler
from .pareto import pareto
from .space import SearchSpace
from .table import Table


@dataclass
class ReplayTrial:
    number: int
    key: str
    start: float
    end: float
    outcome: Outcome
    flops: int
    params: int
    accuracy: Optional[float]
    train_s: float


@dataclass
class ReplayResult:
    space: SearchSpace
    trials: List[ReplayTrial] = field(default_factory=list)  # in the order they finished
    study: Optional[optuna.Study] = None

    def frame(self, upto: Optional[int] = None) -> pd.DataFrame:
        """The finished trials as a trials table (what :func:`mrla_nas.pareto.pareto` reads)."""
        rows = [{"trial_id": t.number, "key": t.key, "status": "complete" if t.outcome.state == COMPLETE else
                 ("infeasible" if t.outcome.state == PRUNED else "failed"), "accuracy": t.accuracy,
                 "flops": t.flops, "params": t.params, "fidelity": 1.0, "end": t.end, "train_s": t.train_s}
                for t in self.trials[:upto]]
        return pd.DataFrame(rows, columns=["trial_id", "key", "status", "accuracy", "flops", "params", "fidelity",
                                           "end", "train_s"])

    def hypervolume_curve(self) -> List[float]:
        """Normalised hypervolume after 1, 2, ... distinct networks (in finishing order)."""
        df = self.frame()
        return [pareto(df.iloc[: i + 1], self.space.objectives, self.space.constraints)[1] for i in range(len(df))]

    def keys(self) -> List[str]:
        return [t.key for t in self.trials]


class TableAnswers:
    """Outcome, cost and training seconds of a network, from a table, averaged over ``seeds``."""

    def __init__(self, table: Table, space: SearchSpace, seeds: Optional[Sequence[int]] = None):
        self.space = space
        self.seeds = list(seeds) if seeds is not None else table.seeds()
        rows = table.rows[table.rows["seed"].isin(self.seeds)]
        last = rows.sort_values("epoch").groupby(["key", "seed"]).tail(1)
        self.accuracy = last.groupby("key")["val_accuracy"].mean().to_dict()
        self.seconds = rows.groupby("key")["seconds"].sum().to_dict()
        nets = table.networks().set_index("key")
        self.cost = {k: (int(r.flops), int(r.params)) for k, r in nets.iterrows()}

    def measure(self, arch) -> Tuple[int, int]:
        key = arch.key()
        if key not in self.cost:
            raise KeyError(f"network {arch.summary()} ({key}) is not in the table")
        return self.cost[key]

    def evaluate(self, key: str, feasible: bool) -> Tuple[Outcome, float, Optional[float]]:
        """(what Optuna is told, simulated training seconds, accuracy)."""
        if not feasible:
            return Outcome(PRUNED), 0.0, None
        acc = float(self.accuracy[key])
        flops, params = self.cost[key]
        have = {"accuracy": acc, "flops": float(flops), "params": float(params)}
        return Outcome(COMPLETE, [have[n] for n in self.space.objective_names()]), float(self.seconds[key]), acc


def replay(table: Table, space: Optional[SearchSpace] = None, trials: Optional[int] = None,
           sampler: Optional[str] = None, seed: Optional[int] = None, concurrency: Optional[int] = None,
           seeds: Optional[Sequence[int]] = None, sampler_obj: Optional[optuna.samplers.BaseSampler] = None,
           initial: Optional[list] = None) -> ReplayResult:
    """Replay a search of ``space`` (default: the table's) answered from ``table``.

    ``sampler``/``seed``/``trials``/``concurrency``/``initial`` override the space's search section;
    ``sampler_obj`` replaces the sampler outright (e.g. TPE with other settings); ``seeds`` are the
    table's seeds whose mean a trial reports (default: all).
    """
    space = space or table.space
    overrides = {k: v for k, v in dict(sampler=sampler, trials=trials, concurrency=concurrency,
                                       initial=initial).items() if v is not None}
    if overrides or seed is not None:
        data = space.to_dict()
        data["search"] = dict(data["search"], **overrides)
        if seed is not None:
            data["seed"] = seed
        space = SearchSpace.from_dict(data, check_paths=False)
    answers = TableAnswers(table, space, seeds)
    study = optuna.create_study(directions=space.directions(), sampler=sampler_obj or make_sampler(space))
    for arch in space.initial_configs():
        study.enqueue_trial(space.params_for(arch))
    proposer = Proposer(study, space, answers.measure, seed=space.seed)
    target = min(space.search["trials"], space.size())
    slots = space.search["concurrency"]
    result = ReplayResult(space, study=study)
    running: List[tuple] = []
    clock, started, order = 0.0, 0, 0
    while len(result.trials) < target:
        while len(running) < slots and started < target:
            p = proposer.propose()
            if p is None:
                break
            outcome, seconds, acc = answers.evaluate(p.arch.key(), p.feasible)
            heapq.heappush(running, (clock + seconds, order, p, outcome, seconds, acc, clock))
            started += 1
            order += 1
        if not running:
            break
        end, _, p, outcome, seconds, acc, start = heapq.heappop(running)
        clock = end
        proposer.finish(p.number, p.arch.key(), outcome)
        result.trials.append(ReplayTrial(p.number, p.arch.key(), start, end, outcome, p.flops, p.params, acc,
                                         seconds))
    return result


def repeat(table: Table, repeats: int, **kwargs) -> List[ReplayResult]:
    """``repeats`` replays with sampler seeds 0..repeats-1."""
    return [replay(table, seed=r, **kwargs) for r in range(repeats)]


def curve_stats(curves: List[List[float]], n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% interval (normal, over repeats) of hypervolume after 1..n networks."""
    m = np.array([c[:n] + [c[-1]] * (n - len(c)) for c in curves], dtype=float)
    mean = m.mean(0)
    half = 1.96 * m.std(0, ddof=1) / np.sqrt(len(m)) if len(m) > 1 else np.zeros(n)
    return mean, mean - half, mean + half
