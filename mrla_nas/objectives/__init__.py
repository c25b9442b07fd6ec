"""How trials compare on a space's objectives (accuracy up; FLOPs and params down), as plain numpy:
Pareto fronts, hypervolume and the knee of a trials table (``pareto.py``), and the successive-halving
rule that stops trials at a rung by non-dominated rank (``halving.py``), shared by the live search and
the table replay. Imports :mod:`mrla_nas.space` (the rung rule) and :mod:`mrla_nas.rundir` (the
trials table's statuses).
"""
from .halving import SuccessiveHalving, rule_for, rung_values
from .pareto import front_candidates, hypervolume, knee_index, non_dominated, pareto, reference_point

__all__ = ["SuccessiveHalving", "rule_for", "rung_values", "front_candidates", "hypervolume", "knee_index",
           "non_dominated", "pareto", "reference_point"]
