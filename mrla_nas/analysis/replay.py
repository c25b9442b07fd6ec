"""A search answered from a table instead of trained: the same sampler code and the same
:class:`~mrla_nas.search.proposer.Proposer` as the live Ray search, with simulated wall time.

``concurrency`` slots run at once, as Ray's trials do: a slot that frees is given the next proposal,
which therefore sees exactly the results finished by then; a trial lasts the training seconds the
table recorded (over the seeds the replay uses). No Ray, no training: 100 repeats of a 40-trial
search take seconds.

>>> from mrla_nas.analysis.benchmark_table import load_table
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

from ..errors import ConfigError
from ..objectives.halving import rule_for, rung_values
from ..objectives.pareto import pareto
from ..rundir.records import COMPLETE as COMPLETED, FAILED, INFEASIBLE, STOPPED
from ..search.proposer import COMPLETE, PRUNED, Outcome, Proposal, Proposer
from ..search.samplers import make_sampler
from ..settings import optuna_verbosity
from ..space import SearchSpace
from .benchmark_table import LATENCY_COLUMNS, BenchmarkTable


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
    latency: Optional[float] = None  # the latency objective's value (where it is one)


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
                 "end": t.end, "train_s": t.train_s, "latency": t.latency}
                for t in self.trials[:upto]]
        return pd.DataFrame(rows, columns=["trial_id", "key", "status", "accuracy", "flops", "params", "fidelity",
                                           "end", "train_s", "latency"])

    @staticmethod
    def _status(t: ReplayTrial) -> str:
        if t.outcome.state == COMPLETE:
            return COMPLETED
        if t.outcome.state == PRUNED:
            return STOPPED if t.outcome.stopped_epoch is not None else INFEASIBLE
        return FAILED

    def compute_curve(self, scored_by: Optional[Dict[str, float]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(cumulative training seconds, normalised hypervolume) after each finished trial."""
        spent = np.cumsum([t.train_s for t in self.trials])
        return spent, np.array(self.hypervolume_curve(scored_by))

    def hypervolume_curve(self, scored_by: Optional[Dict[str, float]] = None) -> List[float]:
        """Normalised hypervolume after 1, 2, ... distinct networks (in finishing order).

        ``scored_by`` (key -> accuracy, e.g. :meth:`BenchmarkTable.final_accuracy`): score the networks the
        search completed with these accuracies instead of the ones it saw (what it found, judged
        with less noise)."""
        df = self.frame()
        if scored_by is not None:
            df["accuracy"] = [scored_by[k] if s == COMPLETED else None for k, s in zip(df["key"], df["status"])]
        return [pareto(df.iloc[: i + 1], self.space.objectives, self.space.constraints)[1] for i in range(len(df))]

    def keys(self) -> List[str]:
        return [t.key for t in self.trials]


class TableAnswers:
    """Per-epoch accuracy (mean over ``seeds``) and cumulative training seconds of each network of a
    table, and its cost."""

    def __init__(self, table: BenchmarkTable, space: SearchSpace, seeds: Optional[Sequence[int]] = None):
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
        self.latency: Dict[str, Dict[str, float]] = {}
        if "latency" in space.objectives:
            if "latency_ratio" not in nets:
                raise ConfigError("objectives.latency: this table has no latency measurements; add them with "
                                  "experiments/table_latency.py TABLE (it times every network of the table)")
            self.latency = {k: {c: float(r[f"latency_{c}"]) for c in LATENCY_COLUMNS} for k, r in nets.iterrows()}

    def measure(self, arch) -> Tuple[int, int]:
        key = arch.key()
        if key not in self.cost:
            raise KeyError(f"network {arch.summary()} ({key}) is not in the table")
        return self.cost[key]

    def measure_latency(self, arch) -> Dict[str, float]:
        return self.latency[arch.key()]

    def latency_value(self, key: str) -> Optional[float]:
        """The latency objective's value of a network (None where latency is no objective)."""
        return self.latency[key][self.space.latency["metric"]] if self.latency else None

    def values(self, key: str, accuracy: float) -> List[float]:
        flops, params = self.cost[key]
        return self.space.objective_values(accuracy, float(flops), float(params), self.latency_value(key))


def replay(table: BenchmarkTable, space: Optional[SearchSpace] = None, trials: Optional[int] = None,
           sampler: Optional[str] = None, seed: Optional[int] = None, concurrency: Optional[int] = None,
           seeds: Optional[Sequence[int]] = None, sampler_obj: Optional[optuna.samplers.BaseSampler] = None,
           initial: Optional[list] = None, scheduler: Optional[str] = None) -> ReplayResult:
    """Replay a search of ``space`` (default: the table's) answered from ``table``.

    ``sampler``/``seed``/``trials``/``concurrency``/``initial``/``scheduler`` override the space's
    search section; ``sampler_obj`` replaces the sampler outright (e.g. TPE with other settings);
    ``seeds`` are the table's seeds whose mean a trial reports (default: all). With a scheduler, each
    trial reports every epoch and the search's :mod:`~mrla_nas.objectives.halving` rule stops it at a rung.
    """
    space = _with_overrides(space or table.space, seed, dict(sampler=sampler, trials=trials,
                                                              concurrency=concurrency, initial=initial,
                                                              scheduler=scheduler))
    with optuna_verbosity(optuna.logging.WARNING):  # no "A new study created" per replay
        study = optuna.create_study(directions=space.directions(), sampler=sampler_obj or make_sampler(space))
        for arch in space.initial_configs():
            study.enqueue_trial(space.params_for(arch))
        return _Simulation(space, study, TableAnswers(table, space, seeds)).run()


def _with_overrides(space: SearchSpace, seed: Optional[int], search: Dict[str, object]) -> SearchSpace:
    """The space with the given search settings (None: the space's own) and seed."""
    overrides = {k: v for k, v in search.items() if v is not None}
    if not overrides and seed is None:
        return space
    data = space.to_dict()
    data["search"] = dict(data["search"], **overrides)
    if seed is not None:
        data["seed"] = seed
    return SearchSpace.from_dict(data, check_paths=False)


class _Simulation:
    """The live search's schedule, simulated: ``concurrency`` slots; a freed slot gets the next
    proposal; a trial's epochs end when the table's training seconds say; at a rung the halving rule
    decides, at the last epoch the trial completes. Events are (time, order, proposal, epoch just
    finished, start time) in a heap; ``order`` keeps equal times in the order they were made."""

    def __init__(self, space: SearchSpace, study: optuna.Study, answers: TableAnswers):
        self.space, self.answers = space, answers
        self.proposer = Proposer(study, space, answers.measure, seed=space.seed,
                                 measure_latency=answers.measure_latency if answers.latency else None)
        self.rule, self.kind = rule_for(space), space.search["scheduler"]
        self.target = min(space.search["trials"], space.size())
        self.result = ReplayResult(space, study=study)
        self.events: List[tuple] = []
        self.clock, self.started, self.order, self.running = 0.0, 0, 0, 0

    def run(self) -> ReplayResult:
        while len(self.result.trials) < self.target:
            self._fill_slots()
            if not self.events:
                break
            self._next_event()
        return self.result

    def _push(self, time: float, proposal: Proposal, epoch: int, start: float) -> None:
        self.order += 1
        heapq.heappush(self.events, (time, self.order, proposal, epoch, start))

    def _fill_slots(self) -> None:
        while self.running < self.space.search["concurrency"] and self.started < self.target:
            p = self.proposer.propose()
            if p is None:
                return
            self.started, self.running = self.started + 1, self.running + 1
            if not p.feasible:  # counted, never trained: ends at once
                self._push(self.clock, p, 0, self.clock)
            else:
                self._push(self.clock + self.answers.curve[p.arch.key()][0][1], p, 1, self.clock)

    def _next_event(self) -> None:
        time, _, p, epoch, start = heapq.heappop(self.events)
        self.clock = time
        key = p.arch.key()
        if not p.feasible:
            outcome, acc, spent = Outcome(PRUNED), None, 0.0
        else:
            acc, spent = self.answers.curve[key][epoch - 1]
            last = epoch == self.answers.epochs
            if not last and (self.rule is None or self.rule.decide(
                    p.number, epoch, rung_values(self.space, self.kind, acc, *self.answers.cost[key],
                                                 self.answers.latency_value(key)))):
                self._push(start + self.answers.curve[key][epoch][1], p, epoch + 1, start)  # on to its next epoch
                return
            outcome = (Outcome(COMPLETE, self.answers.values(key, acc)) if last else
                       Outcome(PRUNED, stopped_epoch=epoch, partial_accuracy=acc))
        self.running -= 1
        self.proposer.finish(p.number, key, outcome)
        self.result.trials.append(ReplayTrial(p.number, key, start, time, outcome, p.flops, p.params,
                                              acc if outcome.state == COMPLETE else None, spent, epoch,
                                              self.answers.latency_value(key)))


def repeat(table: BenchmarkTable, repeats: int, **kwargs) -> List[ReplayResult]:
    """``repeats`` replays with sampler seeds 0..repeats-1."""
    return [replay(table, seed=r, **kwargs) for r in range(repeats)]


def curve_stats(curves: List[List[float]], n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% interval (normal, over repeats) of hypervolume after 1..n networks."""
    m = np.array([c[:n] + [c[-1]] * (n - len(c)) for c in curves], dtype=float)
    mean = m.mean(0)
    half = 1.96 * m.std(0, ddof=1) / np.sqrt(len(m)) if len(m) > 1 else np.zeros(n)
    return mean, mean - half, mean + half
