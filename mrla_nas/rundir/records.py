"""Reading a trial's record (``RUN/trials/NNNNN.json``) with its fields checked.

The search's workers write these files whole (write and rename), so a malformed one was damaged or
edited outside mrla-nas. Every reader (the trials table, the front, export, validate, the tabular
benchmark, resume) goes through :func:`parse_record`, so such a file is one line that names it and
its field, not a traceback from whichever reader touched it first.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict

from ..arch import arch_from_dict
from ..errors import ConfigError, is_int, is_number, show

# A record's status. The trials table adds STOPPED (an early-stopped trial: its record still says
# running, the study PRUNED) for the rows it shows.
RUNNING, COMPLETE, FAILED, INFEASIBLE, INTERRUPTED = "running", "complete", "failed", "infeasible", "interrupted"
STATUSES = (RUNNING, COMPLETE, FAILED, INFEASIBLE, INTERRUPTED)
STOPPED = "stopped"
# The error a record gets when its trial's worker process vanished (a signal, its node lost): the
# resume retries such an attempt, unlike a failure the training raised.
WORKER_DIED = "worker died"
_DAMAGED = "this trial record was damaged or edited outside mrla-nas (restore it from a copy)"
_PER_SEED = ("val_accuracies", "val_losses", "train_losses", "seconds_per_seed")


def _bad(path, field: str, value, expected: str) -> ConfigError:
    return ConfigError(f"{path}: {field}={show(value)}: expected {expected}; {_DAMAGED}")


def _check_epoch(h, path, where: str) -> None:
    if not isinstance(h, dict):
        raise _bad(path, where, h, "a mapping (one epoch's report)")
    if not (is_int(h.get("epoch")) and h["epoch"] >= 1):
        raise _bad(path, f"{where}.epoch", h.get("epoch"), "an integer >= 1")
    acc = h.get("val_accuracy")
    if not (is_number(acc) and 0 <= acc <= 1):
        raise _bad(path, f"{where}.val_accuracy", acc, "a number in [0, 1]")
    for key in ("val_loss", "train_loss", "seconds", "val_accuracy_sd"):
        if key in h and not is_number(h[key]):
            raise _bad(path, f"{where}.{key}", h[key], "a number")
    seeds = h.get("seeds", [])
    if not (isinstance(seeds, list) and all(is_int(s) for s in seeds)):
        raise _bad(path, f"{where}.seeds", seeds, "a list of integer seeds")
    for key in _PER_SEED:
        values = h.get(key, [])
        if not (isinstance(values, list) and all(is_number(v) for v in values)
                and (not values or len(values) == len(seeds))):
            raise _bad(path, f"{where}.{key}", values, f"a list of {len(seeds)} numbers, one per seed")
    if not all(0 <= v <= 1 for v in h.get("val_accuracies", [])):
        raise _bad(path, f"{where}.val_accuracies", h["val_accuracies"], "accuracies in [0, 1]")


def check_record(rec: Any, path, number: int) -> Dict[str, Any]:
    """``rec`` if it is a well-formed record of trial ``number``; a one-line ConfigError naming
    ``path`` and the field otherwise."""
    if not isinstance(rec, dict):
        raise _bad(path, "record", rec, "a mapping")
    if rec.get("trial_id") != number or not is_int(rec.get("trial_id")):
        raise _bad(path, "trial_id", rec.get("trial_id"), f"{number}, the number in the file's name")
    if rec.get("status", RUNNING) not in STATUSES:
        raise _bad(path, "status", rec.get("status"), f"one of {', '.join(STATUSES)}")
    if rec.get("status") == COMPLETE:  # what a finished trial's readers take from it
        for key in ("arch", "key", "params", "flops"):
            if rec.get(key) is None:
                raise _bad(path, key, rec.get(key), "a value: the trial is complete")
        if not rec.get("history"):
            raise _bad(path, "history", rec.get("history"), "at least one epoch: the trial is complete")
    if rec.get("arch") is not None:
        if not isinstance(rec["arch"], dict):
            raise _bad(path, "arch", rec["arch"], "a mapping (the network's config)")
        arch = arch_from_dict(rec["arch"], where=f"{path}: arch")
        if rec.get("key") is not None and rec["key"] != arch.key():
            raise _bad(path, "key", rec["key"], f"{arch.key()!r}, the key of its arch")
    if rec.get("key") is not None and not isinstance(rec["key"], str):
        raise _bad(path, "key", rec["key"], "a string")
    for key in ("params", "flops"):
        if rec.get(key) is not None and not (is_int(rec[key]) and rec[key] >= 0):
            raise _bad(path, key, rec[key], "a non-negative integer")
    latency = rec.get("latency")
    if latency is not None:
        if not isinstance(latency, dict):
            raise _bad(path, "latency", latency, "a mapping (ms, reference_ms, ratio, spread, rounds)")
        for key in ("ms", "reference_ms", "ratio", "spread"):
            v = latency.get(key)
            if not (is_number(v) and math.isfinite(v) and v >= 0):
                raise _bad(path, f"latency.{key}", v, "a finite number >= 0")
    if rec.get("latency_value") is not None and not (is_number(rec["latency_value"])
                                                     and math.isfinite(rec["latency_value"])):
        raise _bad(path, "latency_value", rec["latency_value"], "a finite number (the latency objective's value)")
    fidelity = rec.get("fidelity", 0.0)
    if not (is_number(fidelity) and 0 <= fidelity <= 1):
        raise _bad(path, "fidelity", fidelity, "a number in [0, 1]")
    for key in ("wall_s", "train_s"):
        if rec.get(key) is not None and not (is_number(rec[key]) and not math.isnan(rec[key])):
            raise _bad(path, key, rec[key], "a number of seconds")
    if rec.get("error") is not None and not isinstance(rec["error"], str):
        raise _bad(path, "error", rec["error"], "a string")
    history = rec.get("history", [])
    if not isinstance(history, list):
        raise _bad(path, "history", history, "a list of epoch reports")
    for i, h in enumerate(history):
        _check_epoch(h, path, f"history[{i}]")
    return rec


def parse_record(path: Path, number: int) -> Dict[str, Any]:
    """Trial ``number``'s record read from ``path``, checked (see :func:`check_record`)."""
    try:
        text = Path(path).read_text()
        rec = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        why = f"{e.msg}, line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise ConfigError(f"{path}: not a JSON trial record ({why}); {_DAMAGED}") from None
    return check_record(rec, path, number)


def record_number(path: Path) -> int:
    """The trial number a record's file name carries (``00042.json`` -> 42); ConfigError otherwise."""
    stem = Path(path).stem
    if not stem.isdigit():
        raise ConfigError(f"{path}: not a trial record (expected a name such as 00042.json); move it out of "
                          f"{Path(path).parent}")
    return int(stem)
