"""The search: Ray Tune runs proxy trainings of architectures that Optuna proposes, scored on
accuracy (max) against fvcore FLOPs (min) [and params (min)]; resumable from the run directory.

Early stopping: ``search.scheduler: moasha`` stops trials by multi-objective successive halving,
``asha`` by the same rule on accuracy alone (:mod:`mrla_nas.halving`); a stopped trial is PRUNED for
Optuna, every trial records its fidelity (epochs done / epochs asked) and the Pareto front is built
from full-fidelity trials only (``mrla_nas.pareto.front_candidates``).

Resume: the Optuna study lives in ``study.journal``; ``resume=True`` continues it to the requested
number of finished trials. A trial that was running when the search was killed is marked
``interrupted`` and its config queued again, so no finished trial is lost or run twice. Each
session is its own Ray Tune experiment under ``tune/part-K`` (Ray cannot enlarge a restored
experiment's sample count, and the study, not Ray, holds the state that matters).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's own console tables: progress.py reports instead
# An over-budget trial reports its cost but no accuracy (it is never trained); Tune's strict check
# would reject that result.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Tune's own per-result loggers (progress.csv, result.json, TensorBoard) duplicate the trial records
# and cost file writes on every report; the records and trials.csv are the run's account.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

from .arch import ArchConfig, ConfigError, arch_from_dict  # noqa: E402
from .errors import show  # noqa: E402
from .run_dir import (check_run_dir, ensure_writable, freeze_space, open_study, record_path,  # noqa: E402
                      read_manifest, run_lock, write_json_atomic, write_manifest, write_trials_csv)
from .decisions import make_sampler  # noqa: E402
from .halving import rule_for  # noqa: E402
from .recovery import finished_networks, recover_interrupted  # noqa: E402
from .searcher import StudySearcher  # noqa: E402
from .space import SearchSpace, load_space
from .space_schema import check_run_name

_TRIAL_CACHE: Dict[Any, Any] = {}  # per worker process: proxy datasets, reused across trials


def _trainable(config: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    """One trial, in a Ray worker: FLOPs already measured; train within budget, record everything."""
    import ray
    from ray import tune

    from .data import proxy_datasets
    from .proxy import proxy_seeds, train_proxy

    number = config["trial_number"]
    path = record_path(Path(ctx["run_dir"]), number)
    arch = arch_from_dict(config["arch"])
    rec = {"trial_id": number, "arch": config["arch"], "key": arch.key(), "params": config["params"],
           "flops": config["flops"], "status": "running", "history": [], "fidelity": 0.0, "error": None,
           "node": ray.get_runtime_context().get_node_id(), "niceness": os.nice(0)}
    t0 = time.perf_counter()
    if not config["feasible"]:
        rec.update(status="infeasible", wall_s=0.0)
        write_json_atomic(path, rec)
        tune.report({"infeasible": 1, "flops": config["flops"], "params": config["params"], "trial_number": number})
        return
    proxy, epochs = ctx["proxy"], ctx["proxy"]["epochs"]
    try:
        key = tuple(proxy[k] for k in ("dataset", "path", "train_size", "val_size", "val_split", "resolution"))
        if _TRIAL_CACHE.get("key") != key:  # one worker serves many trials: the subsets are carved once
            _TRIAL_CACHE.clear()
            _TRIAL_CACHE["key"] = key

        def data(seed: int):
            if seed not in _TRIAL_CACHE:
                _TRIAL_CACHE[seed] = proxy_datasets(proxy, seed, val_seed=ctx["seed"])
            return _TRIAL_CACHE[seed]

        t_train = time.perf_counter()
        write_json_atomic(path, rec)  # "running", with its config: what a reader sees if the worker dies

        def report(ep) -> None:
            rec["history"].append(ep.__dict__.copy())
            rec["fidelity"] = ep.epoch / epochs
            rec["train_s"] = time.perf_counter() - t_train
            rec["wall_s"] = time.perf_counter() - t0
            if ep.epoch == epochs:  # complete before the last report: a scheduler may end the trial there
                rec["status"] = "complete"
            write_json_atomic(path, rec)
            tune.report({"accuracy": ep.val_accuracy, "accuracy_sd": ep.val_accuracy_sd, "flops": config["flops"],
                         "params": config["params"], "epoch": ep.epoch, "val_loss": ep.val_loss,
                         "fidelity": rec["fidelity"], "trial_number": number})

        train_proxy(arch, proxy, seed=ctx["seed"], data=data, report=report,
                    seeds=proxy_seeds(proxy, ctx["seed"]))
        rec["status"] = "complete"
    except Exception as e:  # recorded with its reason; Ray marks the trial errored, the search goes on
        rec.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
        raise
    finally:
        rec["wall_s"] = time.perf_counter() - t0
        write_json_atomic(path, rec)


@dataclass
class SearchResult:
    run_dir: Path
    trials: "Any"  # pandas DataFrame (trials.csv)


def _read_ray_processes(path: Path) -> List[Dict[str, Any]]:
    """The processes a ``ray-processes.json`` lists; a damaged file lists none (with a warning): it
    only serves to end a killed session's leftovers, and holds nothing of the search's results."""
    try:
        items = json.loads(path.read_text()) if path.exists() else []
    except (UnicodeDecodeError, json.JSONDecodeError):
        items = None
    if not isinstance(items, list):
        print(f"mrla-nas: {path} is damaged; Ray processes left by a killed session, if any, are not ended",
              file=sys.stderr)
        return []
    return [p for p in items if isinstance(p, dict) and isinstance(p.get("pid"), int)
            and isinstance(p.get("created"), (int, float)) and not isinstance(p.get("pid"), bool)]


def record_ray_processes(run_dir: Path) -> None:
    """Remember the local Ray processes this session started (pid, start time), so that a later
    session can end the ones a SIGKILL of this driver leaves orphaned (Ray's agents outlive it)."""
    import psutil

    path = Path(run_dir) / "ray-processes.json"
    known = _read_ray_processes(path)
    seen = {(p["pid"], p["created"]) for p in known}
    for proc in psutil.Process().children(recursive=True):
        try:
            item = {"pid": proc.pid, "created": proc.create_time(), "name": proc.name()}
        except psutil.Error:
            continue
        if (item["pid"], item["created"]) not in seen:
            known.append(item)
    write_json_atomic(path, known)


def reap_stale_ray(run_dir: Path) -> int:
    """End Ray processes recorded by an earlier session of this run that are still alive, and wait
    until they are gone: a killed session's workers outlive its driver and go on writing their trial
    records (tests/test_resume.py)."""
    import psutil

    path = Path(run_dir) / "ray-processes.json"
    if not path.exists():
        return 0
    ended = []
    for item in _read_ray_processes(path):
        try:
            proc = psutil.Process(item["pid"])
            if abs(proc.create_time() - item["created"]) < 1e-3:  # the same process, not a reused pid
                proc.kill()
                ended.append(proc)
        except psutil.Error:
            pass
    psutil.wait_procs(ended, timeout=30)
    path.unlink()
    return len(ended)


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


def check_ray_address(address: Optional[str]) -> None:
    """A cluster address (``--address`` or ``RAY_ADDRESS``) that nothing answers is one line before
    anything is written: ``ray.init`` would wait for it for minutes. ``auto`` (the cluster the last
    ``ray start`` on this machine began) must name one that runs."""
    field = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address == "local":
        return
    target = address
    if address == "auto":
        # Ray resolves `auto` only inside ray.init, after the run directory exists; no public API
        # resolves it without connecting, so its own resolver (private) is asked here.
        from ray._private.services import canonicalize_bootstrap_address_or_die
        try:
            target = canonicalize_bootstrap_address_or_die("auto")
        except ConnectionError as e:
            raise ConfigError(f"{field}='auto': {str(e).strip().splitlines()[0]}") from None
    if target.startswith("ray://"):
        target = target[len("ray://"):]
    host, sep, port = target.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{field}={address!r}: expected HOST:PORT of a Ray cluster's head (or ray://HOST:PORT, "
                          "or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        where = f" (the last `ray start` here: {target})" if address == "auto" else ""
        raise ConfigError(f"{field}={address!r}{where}: no Ray cluster answers there ({e.strerror or e}); start one "
                          "(`ray start --head`) or leave the address out for a local Ray") from None


def _init_ray(space: SearchSpace, address: Optional[str]) -> bool:
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                  configure_logging=True)
    if address:
        try:
            ray.init(address=address, **common)
        except ConnectionError as e:  # `auto`'s cluster gone since check_ray_address found it
            raise ConfigError(f"address={address!r}: {str(e).splitlines()[0]}") from None
    else:
        threads = space.proxy["threads"]
        # Ray's raylet starts its workers `nice`d by 15 (RAY_worker_niceness), so any other busy process
        # on the machine starves the trials (measured: 32-46 s per epoch against 1.0 s). The Ray we
        # start runs them at the driver's own priority plus search.worker_niceness (default 0).
        previous = os.environ.get("RAY_worker_niceness")
        os.environ["RAY_worker_niceness"] = str(space.search["worker_niceness"])
        try:
            ray.init(num_cpus=space.search["concurrency"] * threads, **common)
        finally:
            if previous is None:
                os.environ.pop("RAY_worker_niceness", None)
            else:
                os.environ["RAY_worker_niceness"] = previous
    return True


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
    from .space_summary import check_budget

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space_path if isinstance(space_path, SearchSpace) else load_space(space_path)
    run_dir = Path(runs_dir) / (space.name if name is None else check_run_name(name, "--name"))
    if resume:
        check_run_dir(run_dir)
        read_manifest(run_dir)  # damaged: stop before anything changes
        frozen = SearchSpace.from_file(run_dir / "space.yaml", check_paths=False)
        changed = first_difference(dict(frozen.to_dict(), search=None), dict(space.to_dict(), search=None))
        if changed:
            where, was, now = changed
            source = f"space {space.name!r}" if isinstance(space_path, SearchSpace) else str(space_path)
            raise ConfigError(f"{source}: {where}={show(now)}, but the run's frozen space ({run_dir}/space.yaml) "
                              f"has {show(was)}; only the search section may change on a resume: resume with the "
                              "same space or start a new --name")
    elif (run_dir / "study.journal").exists():
        raise ConfigError(f"run directory {str(run_dir)!r} exists; pass --resume to continue it or --name for a new run")
    check_budget(space)
    check_ray_address(address)
    from .data import check_proxy_data
    check_proxy_data(space.proxy, space.seed, space.backbone_combos())  # here, once, not in every trial
    target = trials or space.search["trials"]
    ensure_writable(run_dir)
    with run_lock(run_dir):
        return _run_session(space, run_dir, target, resume, address, progress, enqueue, trainable)


def _run_session(space: SearchSpace, run_dir: Path, target: int, resume: bool, address: Optional[str],
                 progress: bool, enqueue: Optional[List[ArchConfig]] = None, train_fn=None) -> SearchResult:
    """One search session on a validated space and a writable, locked run directory."""
    from ray import tune

    from .progress import ProgressCallback
    from .scheduler import HalvingScheduler

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
    remaining = min(target, space.size()) - finished_networks(study)  # a trial buys a distinct network
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "target_trials": target,
               "resumed": resume, "interrupted_requeued": interrupted, "stale_ray_processes_ended": reaped, "address": address or os.environ.get("RAY_ADDRESS")}
    write_manifest(run_dir, space, session)
    if remaining <= 0:
        done = finished_networks(study)
        print(f"{run_dir}: {done} trials finished already ({target} asked for"
              + (f"; the space holds {space.size()} distinct networks" if done >= space.size() else "")
              + "); nothing to run")
        return SearchResult(run_dir, write_trials_csv(run_dir))

    if any(set(st.forms) - {"none"} for st in space.stages):
        from .kernels import cpu_kernels
        cpu_kernels()  # build the MRLA CPU kernels once here, not in every trial worker at once

    started_ray = _init_ray(space, address)
    local_ray = started_ray and not (address or os.environ.get("RAY_ADDRESS"))
    if local_ray:  # a cluster's processes are not ours to record or end
        record_ray_processes(run_dir)
    try:
        part = 1 + len(list((run_dir / "tune").glob("part-*"))) if (run_dir / "tune").exists() else 1
        rule = rule_for(space)  # asha / moasha: the rule the table replay uses too
        scheduler = HalvingScheduler(rule, space, space.search["scheduler"]) if rule is not None else None
        ctx = {"run_dir": str(run_dir.resolve()), "proxy": space.proxy, "seed": space.seed}
        trainable = tune.with_resources(tune.with_parameters(train_fn or _trainable, ctx=ctx),
                                        {"cpu": space.proxy["threads"]})
        callback = ProgressCallback(run_dir, target, space, enabled=progress,
                                    on_first_trial=record_ray_processes if local_ray else None)
        searcher = StudySearcher(space, study, run_dir)
        with warnings.catch_warnings():
            # Ray's notices about its own deprecations; nothing of ours is silenced (a failed tell is
            # reported by StudySearcher itself)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray(\.|$)")
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                            max_concurrent_trials=space.search["concurrency"],
                                            scheduler=scheduler, reuse_actors=True),
                run_config=tune.RunConfig(name=f"part-{part}", storage_path=str((run_dir / "tune").resolve()),
                                          verbose=0, callbacks=[callback], log_to_file=True,
                                          failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
            )
            tune_logger = logging.getLogger("ray.tune")
            level = tune_logger.level
            tune_logger.setLevel(logging.CRITICAL)  # trial errors are recorded in trials.csv instead
            try:
                tuner.fit()
            finally:
                tune_logger.setLevel(level)
        callback.finish()
    finally:
        if started_ray:
            import ray
            ray.shutdown()
    done = finished_networks(study)
    if done < target and done >= space.size():
        print(f"{run_dir}: the space holds {space.size()} distinct networks and all {done} are evaluated "
              f"({target} trials asked for); the search stops here")
    return SearchResult(run_dir, write_trials_csv(run_dir))
