"""The search. What to propose next, as plain code on an Optuna study (``proposer.py``: distinct
networks, re-proposals answered from their records; ``samplers.py``: the space's sampler), shared
with the table replay; and the Ray Tune search that trains the proposals (``driver.py``: one session
from the space to the trials table, in named steps; ``ray_cluster.py``: starting, finding and
cleaning up Ray; ``tune_trainable.py``: one trial in a worker; ``tune_searcher.py``,
``tune_scheduler.py``, ``tune_progress.py``: the proposer, the halving rule and the progress line as
Ray Tune's searcher, scheduler and callback). Imports :mod:`mrla_nas.space`, :mod:`mrla_nas.rundir`,
:mod:`mrla_nas.objectives`, :mod:`mrla_nas.cost` and, in the trial's worker, :mod:`mrla_nas.training`.

``search`` and ``SearchResult`` load Ray on first use (PEP 562), so the proposer can be used without it.
"""
import importlib

__all__ = ["search", "SearchResult"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("mrla_nas.search.driver"), name)
    raise AttributeError(f"module 'mrla_nas.search' has no attribute {name!r}")
