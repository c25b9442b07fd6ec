"""The search: Ray Tune runs proxy trainings of architectures that Optuna proposes, scored on
accuracy (max) against fvcore FLOPs (min) [and params (min)]; resumable from the run directory.

Early stopping: ``search.scheduler: moasha`` stops trials by multi-objective successive halving,
``asha`` by the same rule on accuracy alone (:mod:`~mrla_nas.objectives.halving`); a stopped trial is PRUNED for
Optuna, every trial records its fidelity (epochs done / epochs asked) and the Pareto front is built
from full-fidelity trials only (:func:`~mrla_nas.objectives.pareto.front_candidates`).

Resume: the Optuna study lives in ``study.journal``; ``resume=True`` continues it to the requested
number of finished trials. A trial that was running when the search was killed is marked
``interrupted`` and its config queued again, so no finished trial is lost or run twice. Each
session is its own Ray Tune experiment under ``tune/part-K`` (Ray cannot enlarge a restored
experiment's sample count, and the study, not Ray, holds the state that matters).
"""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional

import optuna

from ..arch import ArchConfig
from ..errors import ConfigError, show
from ..objectives.halving import rule_for
from ..rundir.files import check_run_dir, ensure_writable, freeze_space
from ..rundir.lock import run_lock
from ..rundir.manifest import check_same_checkpoints, read_manifest, write_manifest
from ..rundir.recovery import finished_networks, recover_interrupted
from ..rundir.study import open_study
from ..rundir.trials_table import write_trials_csv
from ..settings import logger_level, optuna_verbosity
from ..space import SearchSpace, load_space
from ..space.schema import PLACEMENT_KEYS, check_run_name
from .ray_cluster import (check_gpus, check_ray_address, cluster_address, ray_session, reap_stale_ray,
                          record_ray_processes)
from .samplers import make_sampler
from .tune_searcher import StudySearcher


@dataclass
class SearchResult:
    run_dir: Path
    trials: "Any"  # pandas DataFrame (trials.csv)


def first_difference(a: Any, b: Any, where: str = "") -> Optional[tuple]:
    """(dotted path, a's value, b's value) of the first place two parsed YAML documents differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else (where, a, b)


def search(space_path, name: Optional[str] = None, runs_dir="runs", trials: Optional[int] = None,
           resume: bool = False, address: Optional[str] = None, progress: bool = True,
           enqueue: Optional[List[ArchConfig]] = None, trainable=None) -> SearchResult:
    """Run (or resume) a search; returns the run directory and the trials table.

    ``space_path``: a space file or a :class:`SearchSpace`. ``enqueue``: the networks a new run
    evaluates first, in order (default: the space's ``search.initial`` placements); ``mrla-nas
    validate`` runs exactly its chosen networks this way. ``trainable(config, ctx)`` replaces the
    proxy training (benchmarks of the orchestration itself: experiments/bench_orchestration.py).

    Example (starts Ray and trains; `tests/test_search.py` runs it)::

        result = search("search_spaces/tiny.yaml", name="try", trials=4)
        result.trials[["trial_id", "summary", "accuracy", "flops"]]
    """
    space = space_path if isinstance(space_path, SearchSpace) else load_space(space_path)
    run_dir = Path(runs_dir) / (space.name if name is None else check_run_name(name, "--name"))
    _check_before_writing(space, space_path, run_dir, resume, address)
    target = trials or space.search["trials"]
    ensure_writable(run_dir)
    with run_lock(run_dir), optuna_verbosity(optuna.logging.WARNING):
        return _run_session(space, run_dir, target, resume, address, progress, enqueue, trainable)


def _what_is_computed(space: SearchSpace) -> dict:
    """A space without what a resume may change: its search section, and where the proxy trains
    (threads, device, workers, ...; each trial records its device)."""
    data = space.to_dict()
    proxy = {k: v for k, v in data["proxy"].items() if k not in PLACEMENT_KEYS}
    return dict(data, search=None, proxy=proxy)


def _check_before_writing(space: SearchSpace, space_path, run_dir: Path, resume: bool,
                          address: Optional[str]) -> None:
    """Everything that can be wrong with the request, found before the run directory changes: a
    resume of another space, a new run over an old one, a budget no network meets, a cluster that
    does not answer, data the networks cannot train on."""
    from ..space.summary import check_budget
    from ..training.data import check_proxy_data

    if resume:
        check_run_dir(run_dir)
        manifest = read_manifest(run_dir)  # damaged: stop before anything changes
        _check_same_latency_device(space, manifest)
        check_same_checkpoints(space, manifest)
        frozen = SearchSpace.from_file(run_dir / "space.yaml", check_paths=False)
        changed = first_difference(_what_is_computed(frozen), _what_is_computed(space))
        if changed:
            where, was, now = changed
            source = f"space {space.name!r}" if isinstance(space_path, SearchSpace) else str(space_path)
            raise ConfigError(f"{source}: {where}={show(now)}, but the run's frozen space ({run_dir}/space.yaml) "
                              f"has {show(was)}; only the search section and where the proxy trains (proxy."
                              f"{', proxy.'.join(PLACEMENT_KEYS)}) may change on a resume: resume with the same "
                              "space or start a new --name")
    elif (run_dir / "study.journal").exists():
        raise ConfigError(f"run directory {str(run_dir)!r} exists; pass --resume to continue it or --name for a new run")
    check_budget(space)
    check_ray_address(address)
    check_gpus(space, address)
    if "latency" in space.objectives:
        from ..cost.latency import check_latency_device
        check_latency_device(space.latency)
    if space.proxy["compile"]:
        from ..training.device import check_compile
        check_compile("cuda" if space.proxy["device"] == "cuda" else "cpu")
    check_proxy_data(space.proxy, space.seed, space.backbone_combos())  # here, once, not in every trial


def _run_session(space: SearchSpace, run_dir: Path, target: int, resume: bool, address: Optional[str],
                 progress: bool, enqueue: Optional[List[ArchConfig]] = None, train_fn=None) -> SearchResult:
    """One search session on a validated space and a writable, locked run directory."""
    study, session = _open_session(space, run_dir, target, resume, address, enqueue)
    write_manifest(run_dir, space, session)
    remaining = min(target, space.size()) - finished_networks(study)  # a trial buys a distinct network
    if remaining <= 0:
        done = finished_networks(study)
        print(f"{run_dir}: {done} trials finished already ({target} asked for"
              + (f"; the space holds {space.size()} distinct networks" if done >= space.size() else "")
              + "); nothing to run")
        return SearchResult(run_dir, write_trials_csv(run_dir))
    _build_kernels_once(space)
    _decode_once(space)
    _run_trials(space, study, run_dir, target, remaining, address, progress, train_fn)
    done = finished_networks(study)
    if done < target and done >= space.size():
        print(f"{run_dir}: the space holds {space.size()} distinct networks and all {done} are evaluated "
              f"({target} trials asked for); the search stops here")
    return SearchResult(run_dir, write_trials_csv(run_dir))


def _open_session(space: SearchSpace, run_dir: Path, target: int, resume: bool, address: Optional[str],
                  enqueue: Optional[List[ArchConfig]]):
    """The study as this session starts it: the space frozen (a new run), what a killed session left
    put right (a resume), the first networks queued (a new study); and the manifest's session entry."""
    if not resume:
        freeze_space(run_dir, space)
    study = open_study(run_dir, make_sampler(space), space=space)
    # the killed session's workers first: one still training would write its record over what the
    # recovery decides (it came back "complete" after being queued again, and was trained twice)
    reaped = reap_stale_ray(run_dir) if resume else 0
    interrupted = recover_interrupted(study, run_dir, space) if resume else 0
    if not study.trials:
        for arch in (space.initial_configs() if enqueue is None else enqueue):
            study.enqueue_trial(space.params_for(arch))
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "target_trials": target, "resumed": resume,
               "interrupted_requeued": interrupted, "stale_ray_processes_ended": reaped,
               "address": cluster_address(address)}
    if "latency" in space.objectives:
        session["latency_device"] = _latency_device(space)
    return study, session


def _latency_device(space: SearchSpace) -> str:
    from ..cost.latency import device_label
    return device_label(space.latency["device"])


def _check_same_latency_device(space: SearchSpace, manifest) -> None:
    """A run's latencies are ratios and times measured on one kind of device: a resume elsewhere would
    put two machines' times on one front."""
    if "latency" not in space.objectives or not manifest:
        return
    before = {s.get("latency_device") for s in manifest.get("sessions", []) if s.get("latency_device")}
    here = _latency_device(space)
    if before and here not in before:
        raise ConfigError(f"latency.device={space.latency['device']!r}: this run's latencies were measured on "
                          f"{', '.join(sorted(before))}, this machine is {here}; resume it there, or start a new "
                          "--name")


def _build_kernels_once(space: SearchSpace) -> None:
    """Build the MRLA CPU kernels here, once, not in every trial worker at once."""
    if any(set(st.forms) - {"none"} for st in space.stages):
        from ..kernels import cpu_kernels
        cpu_kernels()


def _decode_once(space: SearchSpace) -> None:
    """An ImageFolder's proxy subsets decoded into the cache here, once, with progress on the
    terminal, not in every trial worker at once (they then map the cache)."""
    if space.proxy["dataset"] == "imagefolder":
        from ..training.data import proxy_datasets
        from ..training.proxy import proxy_seeds
        for seed in proxy_seeds(space.proxy, space.seed):
            proxy_datasets(space.proxy, seed, val_seed=space.seed)


def _run_trials(space: SearchSpace, study: optuna.Study, run_dir: Path, target: int, remaining: int,
                address: Optional[str], progress: bool, train_fn) -> None:
    """``remaining`` trials as one Ray Tune experiment ``tune/part-K`` of the run."""
    from .tune_progress import ProgressCallback

    with ray_session(space, address) as started:
        local_ray = started and cluster_address(address) is None
        if local_ray:  # a cluster's processes are not ours to record or end
            record_ray_processes(run_dir)
        callback = ProgressCallback(run_dir, target, space, enabled=progress,
                                    on_first_trial=record_ray_processes if local_ray else None)
        with _ray_notices_silenced():
            _tuner(space, study, run_dir, remaining, callback, train_fn).fit()
        callback.finish()


@contextlib.contextmanager
def _ray_notices_silenced() -> Iterator[None]:
    """Ray's notices about its own deprecations, and Ray Tune's log of each trial's error (recorded in
    trials.csv instead); nothing of ours is silenced (a failed tell is reported by StudySearcher)."""
    with warnings.catch_warnings(), logger_level("ray.tune", logging.CRITICAL):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray(\.|$)")
        yield


def _tuner(space: SearchSpace, study: optuna.Study, run_dir: Path, remaining: int, callback, train_fn):
    """Ray Tune's ``Tuner``: the study's searcher, the space's halving rule as its scheduler, one trial
    per CPU (and GPU) share, every trial's failure kept to itself."""
    from ray import tune

    from .tune_scheduler import HalvingScheduler
    from .tune_trainable import proxy_trial

    part = 1 + len(list((run_dir / "tune").glob("part-*"))) if (run_dir / "tune").exists() else 1
    rule = rule_for(space)  # asha / moasha: the rule the table replay uses too
    scheduler = HalvingScheduler(rule, space, space.search["scheduler"]) if rule is not None else None
    ctx = {"run_dir": str(run_dir.resolve()), "proxy": space.proxy, "seed": space.seed}
    trainable = tune.with_resources(tune.with_parameters(train_fn or proxy_trial, ctx=ctx), space.trial_resources())
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=StudySearcher(space, study, run_dir), num_samples=remaining,
                                    max_concurrent_trials=space.search["concurrency"],
                                    scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(name=f"part-{part}", storage_path=str((run_dir / "tune").resolve()),
                                  verbose=0, callbacks=[callback], log_to_file=True,
                                  failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
