"""The run directory: the unit of resume, and what ``pareto``, ``export`` and ``validate`` read (no
torch, no Ray)::

    runs/NAME/
      space.yaml        frozen copy of the space, defaults resolved          (files.py)
      manifest.json     versions, seed, FLOPs convention, host, sessions     (manifest.py)
      study.journal     Optuna JournalStorage: the source of truth for trial states (study.py, journal.py)
      trials/NNNNN.json one record per Optuna trial: arch, cost, per-epoch metrics, status, error (records.py)
      tune/part-K/      one Ray Tune experiment per search session
      trials.csv        the trials table, rebuilt from the journal and the records (trials_table.py)
      .search.lock      held by the one search session at a time             (lock.py)

``study_attrs.py`` names what mrla-nas keeps in the study; ``recovery.py`` puts right what a killed
session left there. Imports :mod:`mrla_nas.arch` and :mod:`mrla_nas.space`.
"""
from .files import check_run_dir, read_record, read_records, record_path, write_json_atomic
from .study import open_study
from .trials_table import TrialsTable, trials_table, write_trials_csv

__all__ = ["check_run_dir", "read_record", "read_records", "record_path", "write_json_atomic", "open_study",
           "TrialsTable", "trials_table", "write_trials_csv"]
