"""Integrity of a run's Optuna journal (``study.journal``: one JSON operation per line).

A kill in the middle of an append leaves a last line without its newline. Optuna skips such a line
when it reads, but the next append would be written onto it, and from then on the journal no longer
parses. Before a search appends, :func:`set_aside_partial_tail` moves those bytes (never a complete
operation) to a file beside the journal. A line that is corrupt in the middle is reported with its
number and what the lines before it still hold (:func:`describe_corruption`); :func:`keep_lines_before`
cuts the journal there, keeping a copy of the whole file.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def set_aside_partial_tail(path: Path) -> Optional[Path]:
    """Move an incomplete last line (no trailing newline) to ``<journal>.cut-<time>``; return that
    file's path, or None when the journal ends cleanly."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        # find the last newline, reading backwards in blocks (a cut line is at most one append long)
        pos, block = size, 1 << 16
        end_of_complete = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                end_of_complete = start + i + 1
                break
            pos = start
        f.seek(end_of_complete)
        cut = f.read()
        aside = path.with_name(f"{path.name}.cut-{_stamp()}")
        aside.write_bytes(cut)
        f.truncate(end_of_complete)
        f.flush()
        os.fsync(f.fileno())
    return aside


@dataclass
class Corruption:
    line: int            # 1-based number of the first line that is not a complete operation
    lines: int           # lines in the file
    trials_before: int   # trials created in the lines before it (what cutting there keeps)

    def message(self, path: Path, run_dir: Path) -> str:
        return (f"{path}: line {self.line} of {self.lines} is not a complete journal record, so the run cannot be "
                f"read past it; the {self.line - 1} lines before it hold {self.trials_before} trials: "
                f"`mrla-nas repair {run_dir}` keeps those (and a copy of the whole journal)")


def _trials_in(lines) -> Optional[int]:
    """The trials Optuna reads from these journal lines (replayed by its public storage API), or None
    where it cannot replay them."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory(prefix="mrla-nas-journal-") as tmp:
        path = Path(tmp) / "prefix.journal"
        path.write_bytes(b"".join(lines))
        try:
            storage = JournalStorage(JournalFileBackend(str(path)))
            return sum(len(storage.get_all_trials(storage.get_study_id_from_name(study.study_name), deepcopy=False))
                       for study in storage.get_all_studies())
        except Exception:  # whatever Optuna raises on an operation it cannot apply
            return None


def _replays(lines) -> bool:
    """Whether Optuna can replay these journal lines and read the study in them."""
    return _trials_in(lines) is not None


def _first_unreplayable(lines) -> Optional[int]:
    """0-based index of the first line whose operation Optuna cannot apply (every prefix of a sound
    journal replays: it is a log), found by bisection; None when the whole journal replays."""
    if _replays(lines):
        return None
    lo, hi = 0, len(lines)  # lines[:lo] replays, lines[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _replays(lines[:mid]) else (lo, mid)
    return hi - 1


def describe_corruption(path: Path) -> Optional[Corruption]:
    """The first line that is not a complete operation Optuna can apply (a partial last line excepted:
    that is what a kill leaves), or None when every line is one. A line that parses but that Optuna
    cannot apply (a field edited or damaged) is found by replaying prefixes of the journal."""
    bad, n, lines = None, 0, []
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                if bad is None and f.read(1):  # a partial line that is not the last
                    bad = n
                continue
            try:
                op = json.loads(line)
                ok = isinstance(op, dict) and "op_code" in op
            except ValueError:
                ok = False
            if not ok and bad is None:
                bad = n
            if bad is None:
                lines.append(line)
    unreplayable = _first_unreplayable(lines)
    if unreplayable is not None:
        bad = unreplayable + 1
    if bad is None:
        return None
    return Corruption(bad, n, _trials_in(lines[:bad - 1]) or 0)


def keep_lines_before(path: Path, line: int) -> Path:
    """Cut the journal before ``line`` (1-based), keeping a copy of the whole file; returns the copy."""
    path = Path(path)
    backup = path.with_name(f"{path.name}.corrupt-{_stamp()}")
    shutil.copy2(path, backup)
    with open(path, "rb+") as f:
        keep = 0
        for _ in range(line - 1):
            keep += len(f.readline())
        f.truncate(keep)
    return backup
