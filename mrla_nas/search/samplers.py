"""The space's Optuna sampler (``search.sampler``: tpe, nsga2, gp, random, brute_force), seeded by the
space's seed; shared by the live search and the table replay."""
from __future__ import annotations

import warnings

import optuna

from ..space import SearchSpace


class _BruteForce(optuna.samplers.BruteForceSampler):
    """Optuna's brute-force sampler without its ``study.stop()`` once the space is exhausted: that only
    works inside ``study.optimize``; the Proposer stops an exhausted space itself."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's Optuna sampler, seeded by the space's seed (``brute_force``: every network once,
    to build a table of the whole space)."""
    name, seed = space.search["sampler"], space.seed
    if name == "tpe":
        # multivariate, grouped TPE: measured on the default space's table (experiments/results/samplers.md)
        # it reaches random search's 40-network hypervolume after 24 networks, univariate TPE after 33
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=6, multivariate=True, group=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, space.search["trials"] // 3)))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=6)
    if name == "brute_force":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since 3.1 in practice
            return _BruteForce(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)
