"""The run directory: the unit of resume, and what ``pareto`` / ``export`` read.

    runs/NAME/
      space.yaml        frozen copy of the space, defaults resolved
      manifest.json     versions, seed, FLOPs convention, host, sessions
      study.journal     Optuna JournalStorage (the source of truth for trial states)
      trials/NNNNN.json one record per Optuna trial (arch, cost, per-epoch metrics, status, error)
      tune/part-K/      one Ray Tune experiment per search session
      trials.csv        the trials table, rebuilt from the journal and the records
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import pandas as pd
import yaml

from .arch import ConfigError, arch_from_dict
from .errors import show
from .records import parse_record, record_number

if TYPE_CHECKING:  # optuna is imported where it is used: pareto/export need not load it
    import optuna

STUDY_NAME = "mrla-nas"
# How a trial whose worker process vanished is recorded (progress.py); recovery.py retries those.
WORKER_DIED = "worker died"


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a killed process never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, default=float)
    os.replace(tmp, path)


def record_path(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "trials" / f"{number:05d}.json"


def read_record(run_dir: Path, number: int) -> Optional[Dict[str, Any]]:
    """Trial ``number``'s record, checked (:mod:`mrla_nas.records`), or None if it has none yet."""
    path = record_path(run_dir, number)
    return parse_record(path, number) if path.exists() else None


def mark_record(run_dir: Path, number: int, **fields) -> Dict[str, Any]:
    """Update (or start) trial ``number``'s record with ``fields``, atomically; returns the record."""
    rec = read_record(run_dir, number) or {"trial_id": number, "history": [], "fidelity": 0.0}
    rec.update(fields)
    write_json_atomic(record_path(run_dir, number), rec)
    return rec


def read_records(run_dir: Path) -> Dict[int, Dict[str, Any]]:
    """Every trial record of a run directory, checked, by trial number."""
    out = {}
    for p in sorted((Path(run_dir) / "trials").glob("*.json")):
        number = record_number(p)
        out[number] = parse_record(p, number)
    return out


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("mrla-nas", "torch", "torchvision", "timm", "optuna", "ray", "fvcore", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def read_manifest(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The run's manifest (None before the first session); a one-line ConfigError when damaged, so a
    resume stops before it changes anything rather than overwrite the run's history of sessions."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        manifest = f"<not JSON: {getattr(e, 'msg', 'not UTF-8')}>"
    if not (isinstance(manifest, dict) and isinstance(manifest.get("sessions", []), list)):
        raise ConfigError(f"{path}: {show(manifest)}: expected the run's manifest (a mapping with a list of "
                          "sessions); restore it from a copy, or move it aside to start a new one (the trials "
                          "do not depend on it)")
    return manifest


def write_manifest(run_dir: Path, space, session: Dict[str, Any]) -> None:
    path = Path(run_dir) / "manifest.json"
    manifest = read_manifest(run_dir) or {
        "name": space.name, "seed": space.seed, "flops_convention": space.flops_convention,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sessions": []}
    manifest.setdefault("sessions", [])
    manifest["versions"] = versions()
    manifest["host"] = socket.gethostname()
    manifest["sessions"].append(session)
    write_json_atomic(path, manifest)


def freeze_space(run_dir: Path, space) -> None:
    (Path(run_dir) / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))


def ensure_writable(run_dir: Path) -> None:
    """Create ``run_dir`` if needed and prove it (and its trials/) can be written, before a search
    touches anything in it; a ConfigError otherwise (nothing is changed)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for folder in (run_dir, run_dir / "trials"):
            if folder.is_dir():
                fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
                os.close(fd)
                os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"run directory {str(run_dir)!r}: cannot be written ({e.strerror}); nothing was changed. "
                          "Copy it somewhere writable, or give --runs-dir / --name for a new run") from None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for one search session: a second ``search`` of the same run fails with a
    ConfigError instead of interleaving its trials (and its journal appends) with the first."""
    import fcntl

    path = Path(run_dir) / ".search.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise ConfigError(f"run directory {str(run_dir)!r}: being searched right now by {owner}; "
                              "wait for it, or give --name for a new run") from None
        f.seek(0)
        f.truncate()
        f.write(f"mrla-nas pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_run_dir(run_dir: Path) -> None:
    if not (Path(run_dir) / "space.yaml").is_file() or not (Path(run_dir) / "study.journal").is_file():
        raise ConfigError(f"run={str(run_dir)!r}: not a mrla-nas run directory (no space.yaml / study.journal)")


def open_study(run_dir: Path, sampler: Optional["optuna.samplers.BaseSampler"] = None,
               space=None) -> "optuna.Study":
    """The run's Optuna study, from its JournalStorage file.

    With ``space`` (a search about to append, holding :func:`run_lock`): the study is created when
    missing, with the space's directions and metric names (accuracy, flops[, params]); an incomplete
    last journal line left by a kill is set aside first (:mod:`mrla_nas.journal`), and so is Optuna's
    lock file of a session killed while it appended. Without: the existing study, for reading.
    A journal corrupt in the middle is a ConfigError naming the line and what can be recovered.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from .journal import describe_corruption, set_aside_partial_tail

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Using an existing study" on every read
    path = Path(run_dir) / "study.journal"
    if space is not None:
        # Only a search session appends to the journal, and it holds the run's lock: an Optuna lock
        # file beside the journal is a killed session's, which Optuna would wait out for its 30 s
        # grace period before taking it over.
        stale = path.with_name(path.name + ".lock")  # optuna.storages.journal's LOCK_FILE_SUFFIX
        if stale.is_symlink() or stale.exists():
            stale.unlink()
        aside = set_aside_partial_tail(path)
        if aside is not None:
            print(f"mrla-nas: the last {aside.stat().st_size} bytes of {path} were an operation cut off by a kill "
                  f"(never completed); set aside in {aside.name}", file=sys.stderr)
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
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


def interrupted_trials(study: "optuna.Study") -> Dict[int, Optional[Dict[str, Any]]]:
    """Trial number -> config (or None) of the attempts a killed session left unfinished, as
    :mod:`mrla_nas.recovery` lists them in the study's ``interrupted`` user attribute (older runs
    marked the trial itself)."""
    return {int(k): v for k, v in study.user_attrs.get("interrupted", {}).items()}


def _row(t, rec: Dict[str, Any], marked: Dict[int, Any]) -> Optional[Dict[str, Any]]:
    """One trials-table row from an Optuna trial and its record (None: a queued trial, not yet a row)."""
    import optuna

    status = rec.get("status")
    if t.state == optuna.trial.TrialState.FAIL and (t.number in marked or t.user_attrs.get("interrupted")):
        status = "interrupted"
    elif t.state == optuna.trial.TrialState.FAIL:
        status = "failed"
    elif t.state == optuna.trial.TrialState.WAITING:
        return None
    elif status is None:
        status = "running"
    elif status == "running" and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        # the scheduler ended it: early (stopped, PRUNED for Optuna) or right after its last epoch
        status = "complete" if rec.get("fidelity", 0.0) >= 1.0 else "stopped"
    arch_dict = rec.get("arch") or t.user_attrs.get("arch") or marked.get(t.number)
    row = {"trial_id": t.number, "status": status}
    if arch_dict:
        arch = arch_from_dict(arch_dict)
        canonical = arch.canonical()
        row["summary"] = arch.summary()
        for i, s in enumerate(canonical.stages, start=1):
            row[f"stage{i}_form"] = s.form
            row[f"stage{i}_heads"] = s.heads
            row[f"stage{i}_reduction"] = s.reduction
        row["key"] = arch.key()
        # which backbone choice (everything but the stages): explain compares MRLA within one
        row["backbone"] = json.dumps({k: v for k, v in canonical.to_dict().items() if k != "stages"},
                                     sort_keys=True, separators=(",", ":"))
    row["params"] = rec.get("params", t.user_attrs.get("params"))
    row["flops"] = rec.get("flops", t.user_attrs.get("flops"))
    hist = rec.get("history", [])
    for h in hist:
        row[f"acc_epoch_{h['epoch']}"] = h["val_accuracy"]
    row["accuracy"] = hist[-1]["val_accuracy"] if hist and status in ("complete", "stopped") else None
    row["accuracy_sd"] = hist[-1].get("val_accuracy_sd", 0.0) if row["accuracy"] is not None else None
    row["seeds"] = len(hist[-1].get("seeds") or [0]) if hist else None
    row["fidelity"] = rec.get("fidelity", 0.0)
    row["error"] = rec.get("error") or t.user_attrs.get("error")
    row["wall_s"] = rec.get("wall_s")
    row["train_s"] = rec.get("train_s")
    return row


_SETTLED = {"complete": 0, "stopped": 1, "infeasible": 2, "failed": 3, "running": 4, "interrupted": 5}


def _one_row_per_network(df: pd.DataFrame, proposed: Dict[str, int]) -> pd.DataFrame:
    """Fold the attempts at one network (an interrupted one and its re-run) into one row, the settled
    attempt's; ``attempts`` counts them, ``proposed`` how often the sampler proposed the network.
    Attempts killed before their network was sampled have no key and keep a row each."""
    if df.empty:
        return df
    if "key" not in df:
        df["key"] = None
    df = df.sort_values("trial_id").reset_index(drop=True)
    keyed = df[df["key"].notna()].copy()
    keyed["_rank"] = keyed["status"].map(_SETTLED).fillna(9)
    attempts = keyed.groupby("key")["trial_id"].count()
    keep = keyed.sort_values(["_rank", "trial_id"]).drop_duplicates("key").drop(columns="_rank")
    keep["attempts"] = keep["key"].map(attempts).astype(int)
    keep["proposed"] = [int(attempts[k]) + proposed.get(k, 0) for k in keep["key"]]
    out = pd.concat([keep, df[df["key"].isna()].assign(attempts=1, proposed=1)])
    return out.sort_values("trial_id").reset_index(drop=True)


class TrialsTable:
    """The trials table of a run directory, kept up to date incrementally.

    One row per network: the trial that evaluated it, status, config columns, key, params, FLOPs,
    accuracy per epoch and final (mean over seeds, with its sd), fidelity, error, wall time,
    ``attempts`` (more than 1 after an interrupted session) and ``proposed`` (how often the sampler
    proposed it; re-proposals are answered from the record). Status: complete, stopped
    (early-stopped), infeasible, failed, interrupted (the session was killed; its config was queued
    again), running.

    Holding one instance (as the search's progress callback does) re-reads only what changed: the
    journal from where it stopped (Optuna's JournalStorage replays incrementally) and the records
    whose files changed, so refreshing after each trial does not re-read the whole run.
    """

    def __init__(self, run_dir: Path, study: Optional["optuna.Study"] = None):
        self.run_dir = Path(run_dir)
        self._study = study
        self._rows: Dict[int, tuple] = {}  # number -> (stamp, row)

    def __getstate__(self):  # Ray pickles callbacks: the study (file handles, locks) stays behind
        return dict(self.__dict__, _study=None)

    def frame(self) -> pd.DataFrame:
        if self._study is None:
            check_run_dir(self.run_dir)
            self._study = open_study(self.run_dir)
        rows: List[Dict[str, Any]] = []
        proposed: Dict[str, int] = {}
        marked = interrupted_trials(self._study)
        for t in self._study.get_trials(deepcopy=False):
            if "duplicate_of" in t.user_attrs:  # a re-proposal, answered from the original: counted there
                proposed[t.user_attrs["duplicate_of"]] = proposed.get(t.user_attrs["duplicate_of"], 0) + 1
                continue
            path = record_path(self.run_dir, t.number)
            try:
                st = path.stat()
                mtime = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                mtime = None
            stamp = (t.state, len(t.user_attrs), mtime, t.number in marked)
            cached = self._rows.get(t.number)
            if cached is None or cached[0] != stamp:
                rec = parse_record(path, t.number) if mtime is not None else {}
                cached = self._rows[t.number] = (stamp, _row(t, rec, marked))
            if cached[1] is not None:
                rows.append(cached[1])
        df = _one_row_per_network(pd.DataFrame(rows), proposed)
        if not df.empty:
            for col in df.columns:
                if col.endswith(("_heads", "_reduction")) or col in ("params", "flops"):
                    df[col] = df[col].astype("Int64")
        return df

    def write_csv(self) -> pd.DataFrame:
        """Refresh and write ``trials.csv`` atomically (a reader never sees half a file)."""
        df = self.frame()
        path = self.run_dir / "trials.csv"
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=".tmp-trials-")
        with os.fdopen(fd, "w") as f:
            df.to_csv(f, index=False)
        os.replace(tmp, path)
        return df


def trials_table(run_dir: Path) -> pd.DataFrame:
    """The run's trials table (see :class:`TrialsTable`), read afresh."""
    return TrialsTable(run_dir).frame()


def write_trials_csv(run_dir: Path) -> pd.DataFrame:
    return TrialsTable(run_dir).write_csv()
