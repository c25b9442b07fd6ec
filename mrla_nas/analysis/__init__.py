"""A run read back and judged (no torch): the run with its front (``run.py``), the front as a table and
a plot (``front.py``), the exported network (``export.py``), the validation that retrains the chosen
networks at a higher fidelity (``validation.py``, which runs a search of its own), where MRLA pays off
(``explain.py``), tabular benchmarks of a whole space (``benchmark_table.py``) and searches replayed
from them (``replay.py``). Imports everything below it; only :mod:`mrla_nas.cli` imports it.
"""
from .run import REFERENCE_LABELS, Run, load_run

__all__ = ["Run", "load_run", "REFERENCE_LABELS"]
