"""The one error type for what a user gives, the value predicates its checks share, and the helpers
that keep its messages one short line. Every layer of the package may import this module; it imports
nothing of the package."""
from __future__ import annotations

import difflib
import reprlib


class ConfigError(ValueError):
    """A config or space field with a bad value; the message names the field, the value and what is allowed."""


def is_int(value) -> bool:
    """A Python integer, not a bool (YAML reads ``yes`` as True, and ``True == 1``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_pos_int(value) -> bool:
    """A Python integer >= 1, not a bool: the one check of every count a user gives."""
    return is_int(value) and value > 0


def is_number(value) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SHORT = reprlib.Repr()
_SHORT.maxstring = 200  # long enough for a path
_SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8
_SHORT.maxlevel = 3


def show(value) -> str:
    """``repr(value)`` cut to a readable length: error messages stay one short line whatever the input."""
    return _SHORT.repr(value)


def key_label(key) -> str:
    """A mapping key as it goes into a field path: the name itself, or a short repr of anything else."""
    return key if isinstance(key, str) and len(key) <= 64 else show(key)


def did_you_mean(word: str, allowed) -> str:
    if not isinstance(word, str) or len(word) > 64:
        return ""
    close = difflib.get_close_matches(word, [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
