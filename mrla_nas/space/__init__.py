"""The search space: what may vary, read from YAML and validated before anything runs (no torch).

``search_space.py`` holds :class:`SearchSpace` (sampling through an Optuna trial, its size and its
networks); ``schema.py`` the YAML fields with their defaults and limits; ``recipe.py`` the rules of a
training recipe; ``datasets.py`` the datasets a space can name; ``summary.py`` what ``mrla-nas space``
prints (it measures FLOPs: :mod:`mrla_nas.cost`); ``template.py`` what ``mrla-nas space init`` writes.
Imports :mod:`mrla_nas.arch`, :mod:`mrla_nas.cost` and, for templates of registered networks,
:mod:`mrla_nas.models`.
"""
from .schema import REFERENCE_PLACEMENTS, StageChoices
from .search_space import SearchSpace, load_space

__all__ = ["SearchSpace", "StageChoices", "REFERENCE_PLACEMENTS", "load_space"]
