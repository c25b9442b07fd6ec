"""The YAML fields of a search space: allowed values, defaults and limits, and the readers that turn
each section into checked values. Every bad value raises one :class:`ConfigError` line that names
the field, the value and what is allowed (``mrla-nas`` prints it and exits 2).

:class:`~mrla_nas.space.SearchSpace` calls the ``read_*`` functions section by section; the checks
that need the whole space (heads against the stage widths, sizes at the proxy resolution, the
initial placements) are its own. The rules of a recipe are :mod:`~mrla_nas.space.recipe`'s, the
datasets :mod:`~mrla_nas.space.datasets`'.

>>> read_constraints({"max_flops": "60M"})
{'max_flops': 60000000.0, 'max_params': None}
>>> read_objectives({"accuracy": "min", "flops": "min"})
Traceback (most recent call last):
...
mrla_nas.errors.ConfigError: objectives.accuracy='min': allowed: max
"""
from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..arch import FORMS, Backbone, get_backbone, paper_heads
from ..errors import ConfigError, did_you_mean, is_int, is_number, is_pos_int, key_label, show
from .datasets import DATASETS
from .recipe import (AUGMENTATIONS, DEVICES, MIN_BATCH, OPTIMIZERS, PRECISIONS, VAL_SPLITS,
                     check_augmentation, check_precision)

SAMPLERS = ("tpe", "nsga2", "random", "gp", "brute_force")
SCHEDULERS = ("none", "asha", "moasha")
REFERENCE_PLACEMENTS = ("none", "light", "base")
OBJECTIVES = ("accuracy", "flops", "params", "latency")  # the order of the values told to Optuna
COSTS = OBJECTIVES[1:]

_PROXY_DEFAULTS = dict(dataset="fashion-mnist", path=None, train_size=5000, val_size=1000, epochs=2,
                       resolution=28, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                       weight_decay=5e-4, augmentation="none", threads=1, seeds=1, val_split="train",
                       device="auto", precision="fp32", channels_last="auto", compile=False, workers=0)
# Where a recipe runs, not what it computes: a resume may change them (each trial records its device).
PLACEMENT_KEYS = ("threads", "device", "channels_last", "compile", "workers")
MAX_WORKERS = 256  # DataLoader worker processes per trial
# Upper bounds: beyond any real recipe, they stop a typo from asking for a terabyte of images.
MAX_RESOLUTION = 4096  # px
_PROXY_LIMITS = dict(train_size=100_000_000, val_size=100_000_000, epochs=100_000, resolution=MAX_RESOLUTION,
                     batch_size=65_536, threads=1024, seeds=100)
MAX_BACKBONE_CHOICES = 4096
_SEARCH_DEFAULTS = dict(sampler="tpe", trials=20, concurrency=2, scheduler="none", initial=[], worker_niceness=0,
                        grace_period=1, reduction_factor=2, rungs=None, gpus_per_trial=0, cpus_per_trial=None)
TOP_KEYS = ("name", "seed", "backbone", "stages", "objectives", "constraints", "proxy", "search",
             "flops_convention", "latency")
# How a network's latency is measured (cost/latency.py): null sizes are the proxy's.
LATENCY_MODES = ("train_step", "inference")
LATENCY_DEVICES = ("cpu", "cuda")
LATENCY_METRICS = ("ratio", "ms")
_LATENCY_DEFAULTS = dict(mode="train_step", batch_size=None, resolution=None, threads=1, device="cpu", warmup=3,
                         rounds=21, metric="ratio")
_STAGE_KEYS = ("form", "heads", "channels_per_head", "reduction")


# ---- small checkers: each raises ConfigError naming the path, the value and what is allowed ----
def fail(path: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{path}={show(value)}: {allowed}")


def check_keys(d: Dict, allowed, path: str) -> None:
    if not isinstance(d, dict):
        fail(path, d, "expected a mapping")
    for k in d:
        if k not in allowed:
            where = f"{path}.{key_label(k)}" if path else key_label(k)
            raise ConfigError(f"{where}: unknown key{did_you_mean(k, allowed)}; allowed: {', '.join(allowed)}")


def _pos_int(v, path, allow_none=False, hi=None):
    if v is None and allow_none:
        return v
    if not is_pos_int(v) or (hi is not None and v > hi):
        fail(path, v, (f"expected an integer in [1, {hi:,}]" if hi is not None else "expected a positive integer")
              + (" or null" if allow_none else ""))
    return v


def _number(v, path, lo=None, hi=None, allow_none=False):
    if v is None and allow_none:
        return v
    if isinstance(v, str):
        v = parse_amount(v, path)
    if not is_number(v):
        fail(path, v, "expected a number")
    if not math.isfinite(v):  # .nan compares false with every bound; .inf is no budget (use null)
        fail(path, v, "expected a finite number" + (" (null for none)" if allow_none else ""))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        fail(path, v, f"expected a number in [{lo}, {hi}]")
    return v


def parse_amount(text: str, path: str) -> float:
    """'60M', '1.2G', '5e7' -> a number (YAML 1.1 reads 5e7 as a string)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", text) if len(text) < 64 else None
    if not m:
        fail(path, text, "expected a number such as 60000000, 6.0e+7 or 60M")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2).lower()]


def check_run_name(name, path: str) -> str:
    """A run's name: one folder name (no separators, not '.' or '..'), so a run stays inside its
    runs directory and a validation inside its run."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name) or name in (".", ".."):
        fail(path, name, "expected 1 to 100 letters, digits, '_', '-' or '.' (it names the run directory)")
    return name


def one_of(v, allowed, path):
    if v not in allowed:
        raise ConfigError(f"{path}={show(v)}: allowed: {', '.join(map(str, allowed))}{did_you_mean(v, allowed)}")
    return v


def _choices(v, path) -> List:
    """A choice list: a non-empty list (a scalar means a single fixed choice)."""
    if isinstance(v, dict):
        check_keys(v, ("choices",), path)
        v = v.get("choices")
        path = f"{path}.choices"
        if not isinstance(v, list):
            fail(path, v, "expected a list of choices")
    if not isinstance(v, list):
        v = [v]
    if not v:
        fail(path, v, "the choice list is empty; give at least one value")
    return v


@dataclass(frozen=True)
class StageChoices:
    forms: Tuple[str, ...]
    heads: Tuple[Optional[int], ...]            # counts (None: the paper's default)
    channels_per_head: Tuple[int, ...]          # alternative to heads
    reductions: Tuple[Optional[int], ...]

    def resolved_heads(self, form: str, width: int, family: str = "resnet") -> List[int]:
        """The distinct head counts this stage allows for ``form`` at ``width`` (``null``: the paper's
        default for that backbone family)."""
        if self.channels_per_head:
            vals = [width // d for d in self.channels_per_head]
        else:
            vals = [h or paper_heads(form, width, family) for h in self.heads]
        return sorted(set(vals))


def read_backbone(d) -> Tuple[Backbone, Dict[str, Tuple]]:
    """``backbone.type`` (resnet, vit) and every field of that backbone as a tuple of choices."""
    if not isinstance(d, dict):
        fail("backbone", d, "expected a mapping")
    kind = get_backbone(d.get("type", "resnet"), "backbone.type")
    check_keys(d, ("type", *kind.space_defaults), "backbone")
    out = {}
    for key, default in kind.space_defaults.items():
        path = f"backbone.{key}"
        raw = d.get(key, default)
        if key in kind.list_fields:
            # a list of ints is one fixed value; a list of lists (or {choices: }) are choices
            if isinstance(raw, dict):
                vals = _choices(raw, path)
            elif isinstance(raw, list) and raw and all(isinstance(x, list) for x in raw):
                vals = raw
            else:
                vals = [raw]
        else:
            vals = _choices(raw, path)
        checked = [kind.check_field(key, v, f"{path}[{i}]" if len(vals) > 1 else path) for i, v in enumerate(vals)]
        out[key] = tuple(dict.fromkeys(checked))
    combos = math.prod(len(v) for v in out.values())
    if combos > MAX_BACKBONE_CHOICES:
        fail("backbone", f"<{combos:,} combinations>", f"at most {MAX_BACKBONE_CHOICES:,} combinations of "
              "backbone choices; search fewer backbones at once")
    return kind, out

def stage_count(kind: Backbone, backbone: Dict[str, Tuple]) -> int:
    keys = list(backbone)
    counts = {kind.stage_count(dict(zip(keys, vals))) for vals in itertools.product(*backbone.values())}
    if len(counts) != 1:
        fail("backbone", f"<{len(counts)} stage counts>", f"every backbone choice must have the same number "
              f"of {kind.stage_word}s (got {sorted(counts)}): the stages section is one entry per {kind.stage_word}")
    return counts.pop()

def read_stages(d, n_stages: int) -> Tuple[StageChoices, ...]:
    if isinstance(d, dict):
        entries, paths = [d] * n_stages, ["stages"] * n_stages
    elif isinstance(d, list):
        if len(d) != n_stages:
            fail("stages", f"<{len(d)} entries>", f"expected one entry per stage ({n_stages}), "
                  "or a single mapping for the same choices in every stage")
        entries, paths = d, [f"stages[{i}]" for i in range(n_stages)]
    else:
        fail("stages", d, "expected a mapping (same choices in every stage) or a list, one per stage")
    out = []
    for s, path in zip(entries, paths):
        check_keys(s, _STAGE_KEYS, path)
        if "heads" in s and "channels_per_head" in s:
            raise ConfigError(f"{path}: give heads or channels_per_head, not both")
        forms = _choices(s.get("form", ["none", "light"]), f"{path}.form")
        for i, f in enumerate(forms):
            one_of(f, FORMS, f"{path}.form[{i}]")
        heads = _choices(s.get("heads", [None]), f"{path}.heads")
        for i, h in enumerate(heads):
            _pos_int(h, f"{path}.heads[{i}]", allow_none=True)
        cph = _choices(s["channels_per_head"], f"{path}.channels_per_head") if "channels_per_head" in s else []
        for i, c in enumerate(cph):
            _pos_int(c, f"{path}.channels_per_head[{i}]")
        reds = _choices(s.get("reduction", [None]), f"{path}.reduction")
        for i, r in enumerate(reds):
            _pos_int(r, f"{path}.reduction[{i}]", allow_none=True)
        out.append(StageChoices(tuple(dict.fromkeys(forms)), tuple(dict.fromkeys(heads)),
                                tuple(dict.fromkeys(cph)), tuple(dict.fromkeys(reds))))
    return tuple(out)

def read_objectives(d) -> Dict[str, str]:
    check_keys(d, OBJECTIVES, "objectives")
    for k, v in d.items():
        one_of(v, ("max",) if k == "accuracy" else ("min",), f"objectives.{k}")
    if "accuracy" not in d or not any(k in d for k in COSTS):
        raise ConfigError("objectives: accuracy (max) and at least one cost (flops, params, latency: min) are "
                          "required")
    return {k: d[k] for k in OBJECTIVES if k in d}  # always in this order: the study's values are too


def read_latency(d, proxy: Dict[str, Any]) -> Dict[str, Any]:
    """The ``latency`` section: how a network's time is measured, its sizes resolved from the proxy's."""
    check_keys(d, tuple(_LATENCY_DEFAULTS), "latency")
    lat = dict(_LATENCY_DEFAULTS, **d)
    one_of(lat["mode"], LATENCY_MODES, "latency.mode")
    one_of(lat["device"], LATENCY_DEVICES, "latency.device")
    one_of(lat["metric"], LATENCY_METRICS, "latency.metric")
    lat["batch_size"] = _pos_int(lat["batch_size"], "latency.batch_size", allow_none=True, hi=65_536) or proxy["batch_size"]
    lat["resolution"] = (_pos_int(lat["resolution"], "latency.resolution", allow_none=True, hi=MAX_RESOLUTION)
                         or proxy["resolution"])
    _pos_int(lat["threads"], "latency.threads", hi=1024)
    _pos_int(lat["rounds"], "latency.rounds", hi=10_000)
    if not is_int(lat["warmup"]) or not 0 <= lat["warmup"] <= 10_000:
        fail("latency.warmup", lat["warmup"], "expected an integer in [0, 10,000] (untimed steps per network)")
    return lat

def read_constraints(d) -> Dict[str, Optional[float]]:
    check_keys(d, ("max_flops", "max_params"), "constraints")
    return {k: _number(d.get(k), f"constraints.{k}", lo=1, allow_none=True) for k in ("max_flops", "max_params")}

def read_proxy(d, check_paths: bool) -> Dict[str, Any]:
    check_keys(d, tuple(_PROXY_DEFAULTS), "proxy")
    p = dict(_PROXY_DEFAULTS, **d)
    one_of(p["dataset"], tuple(DATASETS), "proxy.dataset")
    for k, hi in _PROXY_LIMITS.items():
        _pos_int(p[k], f"proxy.{k}", hi=hi)
    for k in ("train_size", "batch_size"):
        if p[k] < MIN_BATCH:
            fail(f"proxy.{k}", p[k], f"expected at least {MIN_BATCH} (BatchNorm trains on batches of {MIN_BATCH} "
                                      "or more: nothing would train)")
    one_of(p["val_split"], VAL_SPLITS, "proxy.val_split")
    one_of(p["optimizer"], OPTIMIZERS, "proxy.optimizer")
    one_of(p["augmentation"], AUGMENTATIONS, "proxy.augmentation")
    check_augmentation(p["augmentation"], p["resolution"], "proxy.resolution")
    p["lr"] = _number(p["lr"], "proxy.lr", lo=1e-8, hi=10)
    p["momentum"] = _number(p["momentum"], "proxy.momentum", lo=0, hi=1)
    p["weight_decay"] = _number(p["weight_decay"], "proxy.weight_decay", lo=0, hi=1)
    one_of(p["device"], DEVICES, "proxy.device")
    one_of(p["precision"], PRECISIONS, "proxy.precision")
    check_precision(p["precision"], p["device"], "proxy.precision", "proxy.device")
    if not (p["channels_last"] == "auto" or isinstance(p["channels_last"], bool)):  # 1 and 0 are not booleans
        fail("proxy.channels_last", p["channels_last"], "allowed: auto, true, false")
    if not isinstance(p["compile"], bool):
        fail("proxy.compile", p["compile"], "allowed: true, false (torch.compile the network, inductor)")
    if not is_int(p["workers"]) or not 0 <= p["workers"] <= MAX_WORKERS:
        fail("proxy.workers", p["workers"], f"expected an integer in [0, {MAX_WORKERS}] (DataLoader worker "
             "processes per trial; 0: batches are read in the trial's own process)")
    if p["path"] is None:
        p["path"] = DATASETS[p["dataset"]].default_path
        if p["path"] is None:
            raise ConfigError(f"proxy.path: required for dataset {show(p['dataset'])} (a local folder; "
                              "nothing is downloaded)")
    if not isinstance(p["path"], str):
        fail("proxy.path", p["path"], "expected a folder path")
    p["path"] = os.path.abspath(os.path.expanduser(p["path"]))  # relative: to the working directory
    if check_paths and not os.path.isdir(p["path"]):
        fail("proxy.path", p["path"], f"folder does not exist; {DATASETS[p['dataset']].hint}")
    return p

def rungs_for(epochs: int, grace_period: int = 1, eta: int = 3, explicit: Optional[Sequence[int]] = None) -> List[int]:
    """The rung epochs below ``epochs`` (the last epoch is never a rung: a trial there is complete).

    >>> rungs_for(9, 1, 3), rungs_for(6, 1, 2), rungs_for(6, explicit=[2, 4])
    ([1, 3], [1, 2, 4], [2, 4])
    """
    if explicit is not None:
        return sorted(r for r in set(explicit) if r < epochs)
    out, r = [], grace_period
    while r < epochs:
        out.append(r)
        r *= eta
    return out


def check_gpu_share(g, path: str):
    """A trial's GPU share: 0 (a CPU trial) or a fraction of one GPU. A proxy trial trains one network
    on one device, so a second GPU would sit idle; several GPUs serve several trials at once."""
    if not is_number(g) or not 0 <= g <= 1:
        fail(path, g, "expected 0 (CPU trials) or a share of one GPU in (0, 1] (0.25: four trials share a GPU; "
             "a trial trains on one GPU, so give several GPUs to several trials with search.concurrency)")
    return g


def read_search(d, n_stages: int) -> Dict[str, Any]:
    check_keys(d, tuple(_SEARCH_DEFAULTS), "search")
    s = dict(_SEARCH_DEFAULTS, **d)
    one_of(s["sampler"], SAMPLERS, "search.sampler")
    one_of(s["scheduler"], SCHEDULERS, "search.scheduler")
    _pos_int(s["trials"], "search.trials", hi=1_000_000)
    _pos_int(s["concurrency"], "search.concurrency", hi=4096)
    _pos_int(s["grace_period"], "search.grace_period", hi=100_000)
    eta = s["reduction_factor"]
    if not is_int(eta) or not 2 <= eta <= 100:
        fail("search.reduction_factor", eta, "expected an integer in [2, 100] (eta: 1/eta of a rung continues)")
    if s["rungs"] is not None:
        if not isinstance(s["rungs"], list) or not s["rungs"]:
            fail("search.rungs", s["rungs"], "expected null or a non-empty list of epochs")
        for i, r in enumerate(s["rungs"]):
            _pos_int(r, f"search.rungs[{i}]", hi=100_000)
    check_gpu_share(s["gpus_per_trial"], "search.gpus_per_trial")
    _pos_int(s["cpus_per_trial"], "search.cpus_per_trial", allow_none=True, hi=1024)
    w = s["worker_niceness"]
    if not is_int(w) or not 0 <= w <= 19:
        fail("search.worker_niceness", w, "expected an integer in [0, 19] (added to the driver's own niceness)")
    if not isinstance(s["initial"], list):
        fail("search.initial", s["initial"], "expected a list of placements (none, light, base, "
              "or a list of forms, one per stage)")
    for i, ref in enumerate(s["initial"]):
        p = f"search.initial[{i}]"
        if isinstance(ref, list):
            if len(ref) != n_stages:
                fail(p, ref, f"expected {n_stages} forms, one per stage")
            for j, f in enumerate(ref):
                one_of(f, FORMS, f"{p}[{j}]")
        else:
            one_of(ref, REFERENCE_PLACEMENTS, p)
    return s
