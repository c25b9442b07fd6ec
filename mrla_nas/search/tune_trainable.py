"""One trial of the search, as Ray Tune runs it in a worker process: the network's FLOPs are already
measured; an over-budget one is recorded and never trained, any other is proxy-trained and its record
(``RUN/trials/NNNNN.json``) rewritten after every epoch, so a reader sees the trial as it goes and a
worker that dies leaves its config behind."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict

from ..arch import arch_from_dict
from ..rundir.files import record_path, write_json_atomic
from ..rundir.records import COMPLETE, FAILED, INFEASIBLE, RUNNING

_DATA_CACHE: Dict[Any, Any] = {}  # per worker process: proxy datasets, reused across trials


def _datasets(proxy: Dict[str, Any], val_seed: int):
    """``seed -> (train, val)`` for ``proxy``: one worker serves many trials, so the subsets of one
    recipe are carved once per worker."""
    from ..training.data import proxy_datasets

    key = tuple(proxy[k] for k in ("dataset", "path", "train_size", "val_size", "val_split", "resolution"))
    if _DATA_CACHE.get("key") != key:
        _DATA_CACHE.clear()
        _DATA_CACHE["key"] = key

    def data(seed: int):
        if seed not in _DATA_CACHE:
            _DATA_CACHE[seed] = proxy_datasets(proxy, seed, val_seed=val_seed)
        return _DATA_CACHE[seed]
    return data


def proxy_trial(config: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    """One trial, in a Ray worker: train within budget, record everything. ``config`` is what the
    proposer gives a trial (:meth:`~mrla_nas.search.proposer.Proposal.config`), ``ctx`` the run's
    directory, proxy recipe and seed."""
    import ray
    from ray import tune

    from ..training.device import resolve
    from ..training.proxy import proxy_seeds, train_proxy

    number = config["trial_number"]
    path = record_path(Path(ctx["run_dir"]), number)
    arch = arch_from_dict(config["arch"])
    rec = {"trial_id": number, "arch": config["arch"], "key": arch.key(), "params": config["params"],
           "flops": config["flops"], "status": RUNNING, "history": [], "fidelity": 0.0, "error": None,
           "node": ray.get_runtime_context().get_node_id(), "niceness": os.nice(0)}
    if config.get("latency") is not None:
        rec.update(latency=config["latency"], latency_value=config["latency_value"])
    t0 = time.perf_counter()
    if not config["feasible"]:
        rec.update(status=INFEASIBLE, wall_s=0.0)
        write_json_atomic(path, rec)
        tune.report({"infeasible": 1, "flops": config["flops"], "params": config["params"], "trial_number": number,
                     "latency": config.get("latency_value")})
        return
    proxy, epochs = ctx["proxy"], ctx["proxy"]["epochs"]
    try:
        # the trial's GPU share, not what CUDA shows, decides `auto` (training/device.py says why)
        placement = resolve(proxy, gpu_share=bool(ray.get_gpu_ids()))
        rec.update(device=placement.describe(), device_note=placement.note)
        data = _datasets(proxy, ctx["seed"])
        t_train = time.perf_counter()
        write_json_atomic(path, rec)  # "running", with its config: what a reader sees if the worker dies

        def report(ep) -> None:
            rec["history"].append(ep.__dict__.copy())
            rec["fidelity"] = ep.epoch / epochs
            rec["train_s"] = time.perf_counter() - t_train
            rec["wall_s"] = time.perf_counter() - t0
            if ep.epoch == epochs:  # complete before the last report: a scheduler may end the trial there
                rec["status"] = COMPLETE
            write_json_atomic(path, rec)
            tune.report({"accuracy": ep.val_accuracy, "accuracy_sd": ep.val_accuracy_sd, "flops": config["flops"],
                         "params": config["params"], "latency": config.get("latency_value"),
                         "epoch": ep.epoch, "val_loss": ep.val_loss,
                         "fidelity": rec["fidelity"], "trial_number": number, "device": rec["device"],
                         "device_note": placement.note or ""})

        train_proxy(arch, proxy, seed=ctx["seed"], data=data, report=report,
                    seeds=proxy_seeds(proxy, ctx["seed"]), placement=placement)
        rec["status"] = COMPLETE
    except Exception as e:  # recorded with its reason; Ray marks the trial errored, the search goes on
        rec.update(status=FAILED, error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
        raise
    finally:
        rec["wall_s"] = time.perf_counter() - t0
        write_json_atomic(path, rec)
