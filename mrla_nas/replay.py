"""A search answered from a table instead of trained: the same sampler code and the same
:class:`~mrla_nas.decisions.Proposer` as the live Ray search, with simulated wall time.

``concurrency`` slots run at once, as Ray's trials do: a slot that frees is given the next proposal,
which therefore sees exactly the results finished by then; a trial lasts the training seconds the
table recorded (over the seeds the replay uses). No Ray, no training: 100 repeats of a 40-trial
search take seconds.

>>> from mrla_nas.table import load_table
>>> table = load_table("experiments/tables/fmnist_resnet20_default.csv")
>>> result = replay(table, trials=20, sampler="tpe", seed=3)
>>> len(result.keys()), round(float(result.hypervolume_curve()[-1]), 4)
(20, 0.1631)
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import optuna
import pandas as pd

from .decisions import COMPLETE, PRUNED, Outcome, Proposer, make_sampler
from .halving import rule_for, rung_values
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
    accuracy: Optional[float]   # the full-fidelity accuracy (None when stopped, over budget)
    train_s: float              # training seconds spent on it
    epochs: int = 0


@dataclass
class ReplayResult:
    space: SearchSpace
    trials: List[ReplayTrial] = field(default_factory=list)  # in the order they finished
    study: Optional[optuna.Study] = None

    def frame(self, upto: Optional[int] = None) -> pd.DataFrame:
        """The finished trials as a trials table (what :func:`mrla_nas.pareto.pareto` reads)."""
        rows = [{"trial_id": t.number, "key": t.key, "status": self._status(t), "accuracy": t.accuracy,
                 "flops": t.flops, "params": t.params,
                 "fidelity": 1.0 if t.outcome.state == COMPLETE else t.epochs / self.space.proxy["epochs"],
                 "end": t.end, "train_s": t.train_s}
                for t in self.trials[:upto]]
        return pd.DataFrame(rows, columns=["trial_id", "key", "status", "accuracy", "flops", "params", "fidelity",
                                           "end", "train_s"])

    @staticmethod
    def _status(t: ReplayTrial) -> str:
        if t.outcome.state == COMPLETE:
            return "complete"
        if t.outcome.state == PRUNED:
            return "stopped" if t.outcome.stopped_epoch is not None else "infeasible"
        return "failed"

    def compute_curve(self, scored_by: Optional[Dict[str, float]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(cumulative training seconds, normalised hypervolume) after each finished trial."""
        spent = np.cumsum([t.train_s for t in self.trials])
        return spent, np.array(self.hypervolume_curve(scored_by))

    def hypervolume_curve(self, scored_by: Optional[Dict[str, float]] = None) -> List[float]:
        """Normalised hypervolume after 1, 2, ... distinct networks (in finishing order).

        ``scored_by`` (key -> accuracy, e.g. :meth:`Table.final_accuracy`): score the networks the
        search completed with these accuracies instead of the ones it saw (what it found, judged
        with less noise)."""
        df = self.frame()
        if scored_by is not None:
            df["accuracy"] = [scored_by[k] if s == "complete" else None for k, s in zip(df["key"], df["status"])]
        return [pareto(df.iloc[: i + 1], self.space.objectives, self.space.constraints)[1] for i in range(len(df))]

    def keys(self) -> List[str]:
        return [t.key for t in self.trials]


class TableAnswers:
    """Per-epoch accuracy (mean over ``seeds``) and cumulative training seconds of each network of a
    table, and its cost."""

    def __init__(self, table: Table, space: SearchSpace, seeds: Optional[Sequence[int]] = None):
        self.space = space
        self.seeds = list(seeds) if seeds is not None else table.seeds()
        rows = table.rows[table.rows["seed"].isin(self.seeds)]
        per_epoch = rows.groupby(["key", "epoch"]).agg(accuracy=("val_accuracy", "mean"), seconds=("seconds", "sum"))
        self.curve: Dict[str, List[Tuple[float, float]]] = {}  # key -> [(accuracy, cumulative seconds)] by epoch
        for key, g in per_epoch.groupby(level="key"):
            g = g.droplevel("key").sort_index()
            self.curve[key] = list(zip(g["accuracy"].astype(float), g["seconds"].cumsum().astype(float)))
        nets = table.networks().set_index("key")
        self.cost = {k: (int(r.flops), int(r.params)) for k, r in nets.iterrows()}
        self.epochs = space.proxy["epochs"]

    def measure(self, arch) -> Tuple[int, int]:
        key = arch.key()
        if key not in self.cost:
            raise KeyError(f"network {arch.summary()} ({key}) is not in the table")
        return self.cost[key]

    def values(self, key: str, accuracy: float) -> List[float]:
        flops, params = self.cost[key]
        have = {"accuracy": accuracy, "flops": float(flops), "params": float(params)}
        return [have[n] for n in self.space.objective_names()]


def replay(table: Table, space: Optional[SearchSpace] = None, trials: Optional[int] = None,
           sampler: Optional[str] = None, seed: Optional[int] = None, concurrency: Optional[int] = None,
           seeds: Optional[Sequence[int]] = None, sampler_obj: Optional[optuna.samplers.BaseSampler] = None,
           initial: Optional[list] = None, scheduler: Optional[str] = None) -> ReplayResult:
    """Replay a search of ``space`` (default: the table's) answered from ``table``.

    ``sampler``/``seed``/``trials``/``concurrency``/``initial``/``scheduler`` override the space's
    search section; ``sampler_obj`` replaces the sampler outright (e.g. TPE with other settings);
    ``seeds`` are the table's seeds whose mean a trial reports (default: all). With a scheduler, each
    trial reports every epoch and the search's :mod:`mrla_nas.halving` rule stops it at a rung.
    """
    space = space or table.space
    overrides = {k: v for k, v in dict(sampler=sampler, trials=trials, concurrency=concurrency,
                                       initial=initial, scheduler=scheduler).items() if v is not None}
    if overrides or seed is not None:
        data = space.to_dict()
        data["search"] = dict(data["search"], **overrides)
        if seed is not None:
            data["seed"] = seed
        space = SearchSpace.from_dict(data, check_paths=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" per replay
    answers = TableAnswers(table, space, seeds)
    rule = rule_for(space)
    kind = space.search["scheduler"]
    study = optuna.create_study(directions=space.directions(), sampler=sampler_obj or make_sampler(space))
    for arch in space.initial_configs():
        study.enqueue_trial(space.params_for(arch))
    proposer = Proposer(study, space, answers.measure, seed=space.seed)
    target = min(space.search["trials"], space.size())
    slots = space.search["concurrency"]
    result = ReplayResult(space, study=study)
    events: List[tuple] = []   # (time, order, proposal, epoch just finished, start time)
    clock, started, order, running = 0.0, 0, 0, 0
    while len(result.trials) < target:
        while running < slots and started < target:
            p = proposer.propose()
            if p is None:
                break
            started, running, order = started + 1, running + 1, order + 1
            if not p.feasible:  # counted, never trained: ends at once
                heapq.heappush(events, (clock, order, p, 0, clock))
            else:
                heapq.heappush(events, (clock + answers.curve[p.arch.key()][0][1], order, p, 1, clock))
        if not events:
            break
        time, _, p, epoch, start = heapq.heappop(events)
        clock = time
        key = p.arch.key()
        if not p.feasible:
            outcome, acc, spent = Outcome(PRUNED), None, 0.0
        else:
            acc, spent = answers.curve[key][epoch - 1]
            last = epoch == answers.epochs
            if not last and (rule is None or rule.decide(
                    p.number, epoch, rung_values(space, kind, acc, *answers.cost[key]))):
                order += 1  # the trial goes on to its next epoch
                heapq.heappush(events, (start + answers.curve[key][epoch][1], order, p, epoch + 1, start))
                continue
            outcome = (Outcome(COMPLETE, answers.values(key, acc)) if last else
                       Outcome(PRUNED, stopped_epoch=epoch, partial_accuracy=acc))
        running -= 1
        proposer.finish(p.number, key, outcome)
        result.trials.append(ReplayTrial(p.number, key, start, time, outcome, p.flops, p.params,
                                         acc if outcome.state == COMPLETE else None, spent, epoch))
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
