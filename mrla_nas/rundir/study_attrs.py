"""The names under which mrla-nas keeps its bookkeeping in a run's Optuna study (user attributes of
the trials and of the study), in one place for every writer and reader: the proposer, the resume
recovery and the trials table.

Trial attributes: ``arch`` (the network's config), ``flops``, ``params`` (its cost, measured before
training), ``latency`` (where it is measured: ms, reference ms, ratio, spread), ``duplicate_of`` (a re-proposal of a known network: the key it was answered from),
``stopped_epoch`` / ``partial_accuracy`` (a trial stopped early at a rung). The study attribute
``interrupted`` lists the attempts a killed session left unfinished ({trial number: config or None});
older runs marked the trial itself with a trial attribute of that name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    import optuna

ARCH, FLOPS, PARAMS, LATENCY = "arch", "flops", "params", "latency"
DUPLICATE_OF = "duplicate_of"
STOPPED_EPOCH, PARTIAL_ACCURACY = "stopped_epoch", "partial_accuracy"
INTERRUPTED = "interrupted"


def interrupted_trials(study: "optuna.Study") -> Dict[int, Optional[Dict[str, Any]]]:
    """Trial number -> config (or None) of the attempts a killed session left unfinished, as
    :mod:`~mrla_nas.rundir.recovery` lists them in the study's ``interrupted`` user attribute."""
    return {int(k): v for k, v in study.user_attrs.get(INTERRUPTED, {}).items()}


def mark_interrupted(study: "optuna.Study", marked: Dict[int, Optional[Dict[str, Any]]]) -> None:
    """Store ``marked`` (trial number -> config or None) as the study's interrupted attempts."""
    study.set_user_attr(INTERRUPTED, {str(k): v for k, v in marked.items()})


def is_interrupted(trial, marked: Dict[int, Any]) -> bool:
    """Whether ``trial`` was an attempt a killed session left unfinished (``marked``: what
    :func:`interrupted_trials` returned)."""
    return trial.number in marked or bool(trial.user_attrs.get(INTERRUPTED))


def is_duplicate(trial) -> bool:
    """Whether ``trial`` re-proposed a known network (answered from its record, not trained)."""
    return DUPLICATE_OF in trial.user_attrs
