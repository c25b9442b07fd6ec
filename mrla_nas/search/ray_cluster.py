"""Ray for one search session: the cluster address checked before anything is written, Ray started
(locally, with explicit CPUs and no dashboard) or joined, the environment Ray Tune reads set for the
session only, and the local Ray processes a killed session left behind ended."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..errors import ConfigError
from ..rundir.files import write_json_atomic
from ..settings import environment
from ..space import SearchSpace

# What Ray Tune reads from the environment, set for a session only (a value the user set wins):
TUNE_ENVIRONMENT = {
    "RAY_AIR_NEW_OUTPUT": "0",  # Ray's own console tables: tune_progress.py reports instead
    # An over-budget trial reports its cost but no accuracy (it is never trained); Tune's strict check
    # would reject that result.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Tune's own per-result loggers (progress.csv, result.json, TensorBoard) duplicate the trial records
    # and cost file writes on every report; the records and trials.csv are the run's account.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}

# no dashboard, the workers' output and Ray's own log lines kept off the user's console
_QUIET = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)


def cluster_address(address: Optional[str]) -> Optional[str]:
    """The cluster a session joins: ``--address``, else ``RAY_ADDRESS``, else None (a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


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
        # resolves it without connecting, so its own resolver (private) is asked here;
        # tests/test_private_apis.py fails when Ray moves or changes it.
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


def check_gpus(space: SearchSpace, address: Optional[str]) -> None:
    """Trials that ask for GPUs (``search.gpus_per_trial``) can be placed: on this machine, by the
    CUDA devices torch sees (the local Ray counts the same ones); on a cluster, by the GPUs its
    nodes declare (``ray start --num-gpus``), one node holding a whole trial's share. Found before
    anything is written: Ray would leave such trials pending for ever."""
    share = space.search["gpus_per_trial"]
    if not share:
        return
    field = f"search.gpus_per_trial={share:g}"
    address = cluster_address(address)
    if address is None:
        import torch

        count = torch.cuda.device_count()
        where = f"this machine has {count} CUDA device{'s' if count != 1 else ''}"
        per_node = count
    else:
        per_node, count = _cluster_gpus(address)
        where = (f"the cluster at {address} declares {count:g} GPU{'s' if count != 1 else ''}"
                 + (f", at most {per_node:g} on one node" if count else ""))
    if per_node < share or not per_node:
        raise ConfigError(f"{field}: {where}; a trial needs {share:g} on one node (start the nodes with "
                          "`ray start --num-gpus N`, or set search.gpus_per_trial: 0 for CPU trials)")


def _cluster_gpus(address: str):
    """(most GPUs on one alive node, GPUs in all) that a running cluster declares."""
    import ray

    if ray.is_initialized():
        return _gpus_of(ray.nodes())
    try:
        ray.init(address=address, **_QUIET)
    except ConnectionError as e:
        raise ConfigError(f"address={address!r}: {str(e).splitlines()[0]}") from None
    try:
        return _gpus_of(ray.nodes())
    finally:
        ray.shutdown()


def _gpus_of(nodes) -> tuple:
    gpus = [float(n.get("Resources", {}).get("GPU", 0)) for n in nodes if n.get("Alive")]
    return (max(gpus, default=0.0), sum(gpus))


@contextlib.contextmanager
def ray_session(space: SearchSpace, address: Optional[str]) -> Iterator[bool]:
    """Ray Tune's environment for the session, and Ray started (or joined) unless it already runs;
    yields whether this session started it (and so shuts it down at the end)."""
    import ray

    with environment(**{k: os.environ.get(k, v) for k, v in TUNE_ENVIRONMENT.items()}):
        started = _init_ray(space, address) if not ray.is_initialized() else False
        try:
            yield started
        finally:
            if started:
                ray.shutdown()


def _init_ray(space: SearchSpace, address: Optional[str]) -> bool:
    import ray

    address = cluster_address(address)
    if address:
        try:
            ray.init(address=address, **_QUIET)
        except ConnectionError as e:  # `auto`'s cluster gone since check_ray_address found it
            raise ConfigError(f"address={address!r}: {str(e).splitlines()[0]}") from None
        return True
    start_local_ray(space.search["concurrency"] * space.trial_resources()["cpu"], space.search["worker_niceness"])
    return True


def start_local_ray(num_cpus: float, worker_niceness: int = 0) -> None:
    """A new local Ray of this process's own, as a search starts it (tests/conftest.py starts one to
    share between in-process searches the same way)."""
    import ray

    # Ray's raylet starts its workers `nice`d by 15 (RAY_worker_niceness), so any other busy process
    # on the machine starves the trials (measured: 32-46 s per epoch against 1.0 s). The Ray we
    # start runs them at the driver's own priority plus search.worker_niceness (default 0).
    # address="local": a new Ray of our own, never a cluster some other process left running (without
    # it, ray.init joins the last local cluster it finds, e.g. a killed session's not yet reaped, and
    # then refuses num_cpus); a cluster to join is asked for with --address or RAY_ADDRESS
    with environment(RAY_worker_niceness=str(worker_niceness)):
        ray.init(address="local", num_cpus=num_cpus, **_QUIET)


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
