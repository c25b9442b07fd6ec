import contextlib
import os
import pathlib

import optuna
import pytest
import torch

import mrla_nas  # noqa: F401  (registers the timm models)
from mrla_nas.models import official_to_mrla_nas_keys
from mrla_nas.rundir.files import freeze_space, record_path, write_json_atomic
from mrla_nas.rundir.study import open_study
from mrla_nas.space import load_space

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _one_ray_for_in_process_searches(request):
    """The tests marked ``ray`` share one local Ray, started as a search starts its own and ended with
    the session: an in-process search finds it running and uses it (search/ray_cluster.py), instead
    of paying Ray's start and shutdown, ~6 s on 2 cores, at each of some 30 searches. A test marked
    ``own_ray`` runs with none: Ray must find no cluster running, or its workers must see an
    environment variable it sets."""
    if not request.node.get_closest_marker("ray"):
        yield
        return
    import ray
    from mrla_nas.search.ray_cluster import start_local_ray

    if request.node.get_closest_marker("own_ray"):
        ray.shutdown()
    elif not ray.is_initialized():
        start_local_ray(num_cpus=2)  # the suite's searches run at most 2 one-thread trials at once
        request.session.config.add_cleanup(ray.shutdown)
    yield


@pytest.fixture(autouse=True, scope="session")
def _decoded_cache_in_a_temporary_folder(tmp_path_factory):
    """ImageFolder subsets are decoded into a cache (training/image_cache.py): the suite's own, not the
    user's ~/.cache. Set in os.environ so that the Ray workers a test starts inherit it."""
    previous = os.environ.get("MRLA_NAS_CACHE_DIR")
    os.environ["MRLA_NAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("mrla-nas-cache"))
    yield
    if previous is None:
        os.environ.pop("MRLA_NAS_CACHE_DIR", None)
    else:
        os.environ["MRLA_NAS_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    torch.set_num_threads(1)  # the suite runs beside other work on 2 cores
    torch.manual_seed(0)


def stop_ray_cluster(port: int) -> None:
    """End the Ray cluster whose head listens on ``port``, and nothing else: ``ray stop --force`` would
    end every Ray on the machine, a search the user runs beside the suite included. Its processes are
    the ones started with its GCS port (head, raylets, agents, workers) and their children."""
    import psutil

    def in_cluster(proc) -> bool:
        try:
            args = proc.cmdline()
        except psutil.Error:
            return False
        return any(a == f"--gcs_server_port={port}" or (a.startswith("--gcs-address=") and a.endswith(f":{port}"))
                   for a in args)

    procs = [p for p in psutil.process_iter() if in_cluster(p)]
    for proc in list(procs):
        with contextlib.suppress(psutil.Error):
            procs += proc.children(recursive=True)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


def load_reference(name: str) -> dict:
    return torch.load(DATA / "reference" / f"{name}.pt", weights_only=True)


def unit_state_dict(official_unit_sd: dict) -> dict:
    """An official ``mrla_module`` state_dict renamed to an mrla-nas unit's, via the converter's own rules."""
    prefixed = {f"layer1.0.mrla.{k}": v for k, v in official_unit_sd.items()}
    return {k[len("layer1.0.mrla."):]: v for k, v in official_to_mrla_nas_keys(prefixed).items()}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def fake_run(tmp_path, trials, space_file=None, latencies=None):
    """A run directory in the real on-disk format (journal + records), without running Ray.
    ``trials``: (forms, status, accuracy, flops, fidelity[, index of the space's backbone choice]);
    ``latencies``: each trial's latency objective value, for a space with that objective."""
    space = load_space(space_file or DATA.parent.parent / "search_spaces" / "tiny.yaml")
    run = tmp_path / "run"
    run.mkdir(parents=True)
    freeze_space(run, space)
    study = open_study(run, space=space)
    for number, (forms, status, acc, flops, fidelity, *choice) in enumerate(trials):
        bb = space.backbone_combos()[choice[0] if choice else 0]
        arch = space.reference_config(forms, bb).canonical()
        state = optuna.trial.TrialState.COMPLETE if status in ("complete", "stopped") else (
            optuna.trial.TrialState.PRUNED if status == "infeasible" else optuna.trial.TrialState.FAIL)
        latency = latencies[number] if latencies else None
        measured = {"accuracy": acc, "flops": flops, "params": 100, "latency": latency}
        study.add_trial(optuna.trial.create_trial(
            state=state, values=([measured[k] for k in space.objective_names()]
                                 if state == optuna.trial.TrialState.COMPLETE else None),
            params={}, distributions={}, user_attrs={"arch": arch.to_dict(), "flops": flops, "params": 100}))
        history = [{"epoch": 1, "val_accuracy": acc, "val_loss": 1.0, "train_loss": 1.0, "seconds": 0.1}] if acc else []
        write_json_atomic(record_path(run, number), {
            "trial_id": number, "arch": arch.to_dict(), "key": arch.key(), "params": 100, "flops": flops,
            "status": "running" if status == "stopped" else status, "history": history, "fidelity": fidelity,
            "error": None, **({"latency_value": latency, "latency": {"ms": 10.0 * latency, "reference_ms": 10.0,
                                                                     "ratio": latency, "spread": 0.0, "rounds": 21}}
                              if latency is not None else {})})
    return run
