"""A run's Optuna study, in its JournalStorage file ``study.journal``."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..errors import ConfigError
from ..settings import optuna_verbosity
from .journal import describe_corruption, set_aside_partial_tail

if TYPE_CHECKING:  # optuna is imported where it is used: pareto/export need not load it
    import optuna

STUDY_NAME = "mrla-nas"


def open_study(run_dir: Path, sampler: Optional["optuna.samplers.BaseSampler"] = None,
               space=None) -> "optuna.Study":
    """The run's Optuna study, from its JournalStorage file.

    With ``space`` (a search about to append, holding :func:`run_lock`): the study is created when
    missing, with the space's directions and metric names (accuracy, flops[, params]); an incomplete
    last journal line left by a kill is set aside first (:mod:`~mrla_nas.rundir.journal`), and so is
    Optuna's lock of a session killed while it appended. Without: the existing study, for reading.
    A journal corrupt in the middle is a ConfigError naming the line and what can be recovered.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    path = Path(run_dir) / "study.journal"
    lock = JournalFileSymlinkLock(str(path))  # the lock JournalFileBackend takes by default, made explicit
    if space is not None:
        # Only a search session appends to the journal, and it holds the run's lock: an Optuna lock
        # held now is a killed session's, which Optuna would wait out for its 30 s grace period before
        # taking it over. Optuna's own takeover releases it through the lock object, as here.
        try:
            lock.release()
        except RuntimeError:  # Optuna's word for "no such lock": nothing was left behind
            pass
        aside = set_aside_partial_tail(path)
        if aside is not None:
            print(f"mrla-nas: the last {aside.stat().st_size} bytes of {path} were an operation cut off by a kill "
                  f"(never completed); set aside in {aside.name}", file=sys.stderr)
    try:
        storage = JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
        with optuna_verbosity(optuna.logging.WARNING):  # not "Using an existing study" on every read
            if space is None:
                return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler)
            study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler,
                                        directions=space.directions(), load_if_exists=True)
    except Exception as e:  # a line Optuna cannot parse or apply (it may raise anything); KeyError: no study
        corruption = describe_corruption(path) if path.exists() else None
        if corruption is not None:
            raise ConfigError(corruption.message(path, Path(run_dir))) from None
        if isinstance(e, KeyError):
            raise ConfigError(f"{path}: holds no mrla-nas study") from None
        raise
    wanted = [optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else optuna.study.StudyDirection.MINIMIZE
              for d in space.directions()]
    if study.directions != wanted:
        raise ConfigError(f"{path}: the study optimises {len(study.directions)} objectives, the space "
                          f"{space.objective_names()}; resume with the run's own space or start a new --name")
    if study.metric_names is None:  # Optuna's tools (optuna-dashboard) then show names, not "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since 3.2 in practice
            study.set_metric_names(space.objective_names())
    return study
