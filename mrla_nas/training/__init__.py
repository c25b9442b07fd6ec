"""Training (torch): datasets from local files and their stratified subsets (``data.py``), the
training loop every network goes through (``trainer.py``), the search's proxy training with several
seeds in lockstep (``proxy.py``) and ``mrla-nas train``'s full training of an exported network
(``full.py``). Imports :mod:`mrla_nas.models` (what it trains) and :mod:`mrla_nas.space` (the recipe
rules and a run's frozen space); knows nothing of Ray, Optuna or the run directory.
"""
from .data import ArrayDataset, load_dataset, proxy_datasets, stratified_split
from .full import train
from .proxy import EpochReport, train_proxy
from .trainer import Trainer, TrialDiverged

__all__ = ["ArrayDataset", "load_dataset", "proxy_datasets", "stratified_split", "Trainer", "TrialDiverged",
           "EpochReport", "train_proxy", "train"]
