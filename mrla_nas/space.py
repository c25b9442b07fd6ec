"""``SearchSpace``: what may vary, read from YAML, validated before anything runs, sampled by Optuna.

Schema (every section but ``name`` optional; see README "Search-space reference"):

.. code-block:: yaml

    name: fmnist_resnet20
    seed: 0
    backbone:            # each key: a fixed value, or {choices: [...]}
      block: basic       # basic | bottleneck
      layers: [3, 3, 3]
      channels: [16, 32, 64]
      stem: small        # 7x7 | deep | small
      in_chans: 1
      num_classes: 10
    stages:              # one mapping for every stage, or a list with one mapping per stage
      form: [none, light, base]
      heads: [null]      # head counts; null = the paper's (32 / 16 channels per head)
      reduction: [null, 4]
    objectives: {accuracy: max, flops: min}
    constraints: {max_flops: 60M}
    proxy: {dataset: fashion-mnist, epochs: 2, ...}
    search: {sampler: tpe, trials: 20, concurrency: 2, initial: [none, light]}

>>> import optuna
>>> space = load_space("search_spaces/tiny.yaml", check_paths=False)
>>> space.size()
25
>>> arch = space.sample(optuna.create_study().ask())
>>> space.contains(arch)
True
"""
from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .arch import FORMS, NetworkConfig, StageConfig
from .backbones import Backbone, get_backbone
from .errors import ConfigError, did_you_mean, key_label, show
from .paper import paper_heads
from .yaml_io import load_yaml_file, load_yaml_text

DATASETS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": None,
    "cifar10": None,
    "imagefolder": None,
}
SAMPLERS = ("tpe", "nsga2", "random", "gp", "brute_force")
SCHEDULERS = ("none", "asha", "moasha")
OPTIMIZERS = ("sgd", "adamw")
AUGMENTATIONS = ("none", "flip", "crop_flip")
CONVENTIONS = ("fvcore", "complete")
REFERENCE_PLACEMENTS = ("none", "light", "base")
OBJECTIVES = ("accuracy", "flops", "params")  # the order of the values told to Optuna

_PROXY_DEFAULTS = dict(dataset="fashion-mnist", path=None, train_size=5000, val_size=1000, epochs=2,
                       resolution=28, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                       weight_decay=5e-4, augmentation="none", threads=1, seeds=1, val_split="train")
# Upper bounds: beyond any real recipe, they stop a typo from asking for a terabyte of images.
_PROXY_LIMITS = dict(train_size=100_000_000, val_size=100_000_000, epochs=100_000, resolution=4096,
                     batch_size=65_536, threads=1024, seeds=100)
VAL_SPLITS = ("train", "test")  # validation carved from the training split, or the dataset's test split
MAX_BACKBONE_CHOICES = 4096
_SEARCH_DEFAULTS = dict(sampler="tpe", trials=20, concurrency=2, scheduler="none", initial=[], worker_niceness=0,
                        grace_period=1, reduction_factor=2, rungs=None)
_TOP_KEYS = ("name", "seed", "backbone", "stages", "objectives", "constraints", "proxy", "search",
             "flops_convention")
_STAGE_KEYS = ("form", "heads", "channels_per_head", "reduction")


# ---- small checkers: each raises ConfigError naming the path, the value and what is allowed ----
def _fail(path: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{path}={show(value)}: {allowed}")


def _check_keys(d: Dict, allowed, path: str) -> None:
    if not isinstance(d, dict):
        _fail(path, d, "expected a mapping")
    for k in d:
        if k not in allowed:
            where = f"{path}.{key_label(k)}" if path else key_label(k)
            raise ConfigError(f"{where}: unknown key{did_you_mean(k, allowed)}; allowed: {', '.join(allowed)}")


def _pos_int(v, path, allow_none=False, hi=None):
    if v is None and allow_none:
        return v
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0 or (hi is not None and v > hi):
        _fail(path, v, (f"expected an integer in [1, {hi:,}]" if hi is not None else "expected a positive integer")
              + (" or null" if allow_none else ""))
    return v


def _number(v, path, lo=None, hi=None, allow_none=False):
    if v is None and allow_none:
        return v
    if isinstance(v, str):
        v = _parse_amount(v, path)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        _fail(path, v, "expected a number")
    if not math.isfinite(v):  # .nan compares false with every bound; .inf is no budget (use null)
        _fail(path, v, "expected a finite number" + (" (null for none)" if allow_none else ""))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        _fail(path, v, f"expected a number in [{lo}, {hi}]")
    return v


def _parse_amount(text: str, path: str) -> float:
    """'60M', '1.2G', '5e7' -> a number (YAML 1.1 reads 5e7 as a string)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", text) if len(text) < 64 else None
    if not m:
        _fail(path, text, "expected a number such as 60000000, 6.0e+7 or 60M")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2).lower()]


def _one_of(v, allowed, path):
    if v not in allowed:
        raise ConfigError(f"{path}={show(v)}: allowed: {', '.join(map(str, allowed))}{did_you_mean(v, allowed)}")
    return v


def _choices(v, path) -> List:
    """A choice list: a non-empty list (a scalar means a single fixed choice)."""
    if isinstance(v, dict):
        _check_keys(v, ("choices",), path)
        v = v.get("choices")
        path = f"{path}.choices"
        if not isinstance(v, list):
            _fail(path, v, "expected a list of choices")
    if not isinstance(v, list):
        v = [v]
    if not v:
        _fail(path, v, "the choice list is empty; give at least one value")
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


@dataclass(frozen=True)
class SearchSpace:
    name: str
    seed: int
    backbone: Dict[str, Tuple]                  # key -> tuple of choices (one for a fixed value)
    stages: Tuple[StageChoices, ...]
    objectives: Dict[str, str]
    constraints: Dict[str, Optional[float]]
    proxy: Dict[str, Any]
    search: Dict[str, Any]
    flops_convention: str = "fvcore"
    backbone_type: str = "resnet"              # which of mrla_nas.backbones: resnet, vit

    @property
    def kind(self) -> Backbone:
        """The backbone family (:mod:`mrla_nas.backbones`): its fields, widths, configs and builder."""
        return get_backbone(self.backbone_type)

    # ---- reading ---------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text: str, source: str = "space", check_paths: bool = True) -> "SearchSpace":
        data = load_yaml_text(text, source)
        if data is None:
            raise ConfigError(f"{source}: empty; a space needs at least a name (see search_spaces/tiny.yaml)")
        return cls.from_dict(data, check_paths=check_paths)

    @classmethod
    def from_file(cls, path, check_paths: bool = True) -> "SearchSpace":
        """Read with :mod:`mrla_nas.yaml_io`: safe loader, bounded size and depth, no duplicate keys."""
        data = load_yaml_file(path, "space file")
        if data is None:
            raise ConfigError(f"{path}: empty; a space needs at least a name (see search_spaces/tiny.yaml)")
        return cls.from_dict(data, check_paths=check_paths)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], check_paths: bool = True) -> "SearchSpace":
        """Validate and build. ``check_paths=False`` skips the dataset-folder check (to inspect a
        space written for another machine)."""
        if not isinstance(data, dict):
            raise ConfigError(f"space: expected a YAML mapping at the top level, got {type(data).__name__}")
        _check_keys(data, _TOP_KEYS, "")
        if "name" not in data:
            raise ConfigError("name: missing; give the space a name (used for the run directory)")
        name = data["name"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name) or name in (".", ".."):
            _fail("name", name, "expected 1 to 100 letters, digits, '_', '-' or '.' (it names the run directory)")
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 32:
            _fail("seed", seed, "expected an integer in [0, 2**32)")

        kind, backbone = cls._read_backbone(data.get("backbone", {}))
        proxy = cls._read_proxy(data.get("proxy", {}), check_paths)
        backbone = kind.resolve_choices(backbone, proxy["resolution"])
        n_stages = cls._stage_count(kind, backbone)
        stages = cls._read_stages(data.get("stages", {"form": ["none", "light"]}), n_stages)
        objectives = cls._read_objectives(data.get("objectives", {"accuracy": "max", "flops": "min"}))
        constraints = cls._read_constraints(data.get("constraints", {}))
        search = cls._read_search(data.get("search", {}), n_stages)
        convention = _one_of(data.get("flops_convention", "fvcore"), CONVENTIONS, "flops_convention")
        space = cls(name, seed, backbone, stages, objectives, constraints, proxy, search, convention, kind.name)
        space._check_divisibility()
        space._check_sizes()
        if search["scheduler"] != "none":
            from .halving import rungs_for
            if not rungs_for(proxy["epochs"], search["grace_period"], search["reduction_factor"], search["rungs"]):
                raise ConfigError(f"search.scheduler={search['scheduler']!r}: no rung below proxy.epochs="
                                  f"{proxy['epochs']} (grace_period {search['grace_period']}); early stopping needs "
                                  "more epochs than its first rung, or scheduler: none")
        for i, ref in enumerate(search["initial"]):
            space._check_contains(space.reference_config(ref, space.backbone_combos()[0]), f"search.initial[{i}]")
        return space

    @staticmethod
    def _read_backbone(d) -> Tuple[Backbone, Dict[str, Tuple]]:
        """``backbone.type`` (resnet, vit) and every field of that backbone as a tuple of choices."""
        if not isinstance(d, dict):
            _fail("backbone", d, "expected a mapping")
        kind = get_backbone(d.get("type", "resnet"), "backbone.type")
        _check_keys(d, ("type", *kind.space_defaults), "backbone")
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
            _fail("backbone", f"<{combos:,} combinations>", f"at most {MAX_BACKBONE_CHOICES:,} combinations of "
                  "backbone choices; search fewer backbones at once")
        return kind, out

    @staticmethod
    def _stage_count(kind: Backbone, backbone: Dict[str, Tuple]) -> int:
        keys = list(backbone)
        counts = {kind.stage_count(dict(zip(keys, vals))) for vals in itertools.product(*backbone.values())}
        if len(counts) != 1:
            _fail("backbone", f"<{len(counts)} stage counts>", f"every backbone choice must have the same number "
                  f"of {kind.stage_word}s (got {sorted(counts)}): the stages section is one entry per {kind.stage_word}")
        return counts.pop()

    @staticmethod
    def _read_stages(d, n_stages: int) -> Tuple[StageChoices, ...]:
        if isinstance(d, dict):
            entries, paths = [d] * n_stages, ["stages"] * n_stages
        elif isinstance(d, list):
            if len(d) != n_stages:
                _fail("stages", f"<{len(d)} entries>", f"expected one entry per stage ({n_stages}), "
                      "or a single mapping for the same choices in every stage")
            entries, paths = d, [f"stages[{i}]" for i in range(n_stages)]
        else:
            _fail("stages", d, "expected a mapping (same choices in every stage) or a list, one per stage")
        out = []
        for s, path in zip(entries, paths):
            _check_keys(s, _STAGE_KEYS, path)
            if "heads" in s and "channels_per_head" in s:
                raise ConfigError(f"{path}: give heads or channels_per_head, not both")
            forms = _choices(s.get("form", ["none", "light"]), f"{path}.form")
            for i, f in enumerate(forms):
                _one_of(f, FORMS, f"{path}.form[{i}]")
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

    @staticmethod
    def _read_objectives(d) -> Dict[str, str]:
        _check_keys(d, OBJECTIVES, "objectives")
        for k, v in d.items():
            _one_of(v, ("max",) if k == "accuracy" else ("min",), f"objectives.{k}")
        if "accuracy" not in d or "flops" not in d:
            raise ConfigError("objectives: accuracy (max) and flops (min) are required; params (min) is optional")
        return {k: d[k] for k in OBJECTIVES if k in d}  # always in this order: the study's values are too

    @staticmethod
    def _read_constraints(d) -> Dict[str, Optional[float]]:
        _check_keys(d, ("max_flops", "max_params"), "constraints")
        return {k: _number(d.get(k), f"constraints.{k}", lo=1, allow_none=True) for k in ("max_flops", "max_params")}

    @staticmethod
    def _read_proxy(d, check_paths: bool) -> Dict[str, Any]:
        _check_keys(d, tuple(_PROXY_DEFAULTS), "proxy")
        p = dict(_PROXY_DEFAULTS, **d)
        _one_of(p["dataset"], tuple(DATASETS), "proxy.dataset")
        for k, hi in _PROXY_LIMITS.items():
            _pos_int(p[k], f"proxy.{k}", hi=hi)
        _one_of(p["val_split"], VAL_SPLITS, "proxy.val_split")
        _one_of(p["optimizer"], OPTIMIZERS, "proxy.optimizer")
        _one_of(p["augmentation"], AUGMENTATIONS, "proxy.augmentation")
        p["lr"] = _number(p["lr"], "proxy.lr", lo=1e-8, hi=10)
        p["momentum"] = _number(p["momentum"], "proxy.momentum", lo=0, hi=1)
        p["weight_decay"] = _number(p["weight_decay"], "proxy.weight_decay", lo=0, hi=1)
        if p["path"] is None:
            p["path"] = DATASETS[p["dataset"]]
            if p["path"] is None:
                raise ConfigError(f"proxy.path: required for dataset {show(p['dataset'])} (a local folder; "
                                  "nothing is downloaded)")
        if not isinstance(p["path"], str):
            _fail("proxy.path", p["path"], "expected a folder path")
        p["path"] = os.path.abspath(os.path.expanduser(p["path"]))  # relative: to the working directory
        if check_paths and not os.path.isdir(p["path"]):
            hint = {"fashion-mnist": "install Debian's dataset-fashion-mnist (apt-get install -y "
                                     "dataset-fashion-mnist) or point proxy.path at a folder of IDX files",
                    "mnist": "point it at a folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]",
                    "cifar10": "point it at the extracted cifar-10-batches-py folder (data_batch_1..5, test_batch)",
                    "imagefolder": "point it at a folder with train/CLASS/*.jpg (and val/CLASS/*.jpg)"}[p["dataset"]]
            _fail("proxy.path", p["path"], f"folder does not exist; {hint}")
        return p

    @staticmethod
    def _read_search(d, n_stages: int) -> Dict[str, Any]:
        _check_keys(d, tuple(_SEARCH_DEFAULTS), "search")
        s = dict(_SEARCH_DEFAULTS, **d)
        _one_of(s["sampler"], SAMPLERS, "search.sampler")
        _one_of(s["scheduler"], SCHEDULERS, "search.scheduler")
        _pos_int(s["trials"], "search.trials", hi=1_000_000)
        _pos_int(s["concurrency"], "search.concurrency", hi=4096)
        _pos_int(s["grace_period"], "search.grace_period", hi=100_000)
        eta = s["reduction_factor"]
        if not isinstance(eta, int) or isinstance(eta, bool) or not 2 <= eta <= 100:
            _fail("search.reduction_factor", eta, "expected an integer in [2, 100] (eta: 1/eta of a rung continues)")
        if s["rungs"] is not None:
            if not isinstance(s["rungs"], list) or not s["rungs"]:
                _fail("search.rungs", s["rungs"], "expected null or a non-empty list of epochs")
            for i, r in enumerate(s["rungs"]):
                _pos_int(r, f"search.rungs[{i}]", hi=100_000)
        w = s["worker_niceness"]
        if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 19:
            _fail("search.worker_niceness", w, "expected an integer in [0, 19] (added to the driver's own niceness)")
        if not isinstance(s["initial"], list):
            _fail("search.initial", s["initial"], "expected a list of placements (none, light, base, "
                  "or a list of forms, one per stage)")
        for i, ref in enumerate(s["initial"]):
            p = f"search.initial[{i}]"
            if isinstance(ref, list):
                if len(ref) != n_stages:
                    _fail(p, ref, f"expected {n_stages} forms, one per stage")
                for j, f in enumerate(ref):
                    _one_of(f, FORMS, f"{p}[{j}]")
            else:
                _one_of(ref, REFERENCE_PLACEMENTS, p)
        return s

    # ---- objectives --------------------------------------------------------------------------
    def objective_names(self) -> List[str]:
        """The objectives, in the order of the study's values: accuracy, flops[, params]."""
        return list(self.objectives)

    def directions(self) -> List[str]:
        """Optuna's study directions for :meth:`objective_names`."""
        return ["maximize" if m == "max" else "minimize" for m in self.objectives.values()]

    # ---- structure -------------------------------------------------------------------------
    def backbone_combos(self) -> List[Dict[str, Any]]:
        keys = list(self.backbone)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(self.backbone[k] for k in keys))]

    def _widths(self, bb: Dict[str, Any]) -> Tuple[int, ...]:
        return self.kind.widths(bb)

    def _check_sizes(self) -> None:
        """Every backbone choice within mrla-nas's limits at the proxy resolution (from the layout alone)."""
        combos = self.backbone_combos()
        for bb in combos:
            arch = self.reference_config("none", bb)
            where = "backbone" if len(combos) == 1 else f"backbone (choice {self._label(bb)})"
            arch.validate(where)
            arch.check_input(self.proxy["resolution"], "proxy.resolution")

    def _label(self, bb: Dict[str, Any]) -> str:
        return ", ".join(f"{k}={bb[k]}" for k, v in self.backbone.items() if len(v) > 1)

    def _check_divisibility(self) -> None:
        for bb in self.backbone_combos():
            for i, (st, width) in enumerate(zip(self.stages, self._widths(bb))):
                base = "stages" if len(set(self.stages)) == 1 and len(self.stages) > 1 else f"stages[{i}]"
                why = f"{self.kind.stage_word} {i + 1} is {width} wide" + (
                    f" (backbone choice {self._label(bb)})" if self._label(bb) else "")
                for j, h in enumerate(st.heads):
                    if h is not None and width % h:
                        raise ConfigError(f"{base}.heads[{j}]={h}: does not divide the stage width; {why}")
                for j, d in enumerate(st.channels_per_head):
                    if width % d:
                        raise ConfigError(f"{base}.channels_per_head[{j}]={d}: does not divide the stage width; {why}")
                for j, r in enumerate(st.reductions):
                    if r is not None and width % r:
                        raise ConfigError(f"{base}.reduction[{j}]={r}: does not divide the stage width; {why}")

    def arch(self, bb: Dict[str, Any], stages: List[StageConfig]) -> NetworkConfig:
        """The config of backbone choice ``bb`` with ``stages``."""
        return self.kind.make(bb, stages)

    def reference_config(self, placement, bb: Dict[str, Any]) -> ArchConfig:
        """'none' / 'light' / 'base' everywhere (the paper's heads and projection), or a list of forms."""
        forms = placement if isinstance(placement, list) else [placement] * len(self.stages)
        return self.arch(bb, [StageConfig(f) for f in forms])

    def contains(self, arch: ArchConfig) -> bool:
        try:
            self._check_contains(arch, "arch")
            return True
        except ConfigError:
            return False

    def _check_contains(self, arch: NetworkConfig, path: str) -> None:
        if arch.backbone != self.backbone_type:
            raise ConfigError(f"{path}: a {arch.backbone} network; the space searches {self.backbone_type} networks")
        kind = self.kind
        bb = kind.fields_of(arch)
        for k, v in bb.items():
            if not any(kind.same_choice(k, v, c, bb) for c in self.backbone[k]):
                raise ConfigError(f"{path}: backbone.{k}={v!r} is not among the space's choices {list(self.backbone[k])}")
        canon = arch.canonical()
        for i, (s, st, width) in enumerate(zip(canon.stages, self.stages, arch.widths())):
            if s.form not in st.forms:
                raise ConfigError(f"{path}: stage {i + 1} form {show(s.form)} is not allowed there ({list(st.forms)})")
            if s.form == "none":
                continue
            allowed = st.resolved_heads(s.form, width, self.kind.family)
            if s.heads not in allowed:
                raise ConfigError(f"{path}: {self.kind.stage_word} {i + 1} heads={s.heads} not allowed ({allowed})")
            if s.reduction not in st.reductions:
                raise ConfigError(f"{path}: stage {i + 1} reduction={s.reduction} not allowed ({list(st.reductions)})")

    # ---- size ------------------------------------------------------------------------------
    def distinct_backbones(self) -> List[Dict[str, Any]]:
        """The backbone choices that build different networks: two choices are the same backbone when
        their plain networks have the same canonical key (``stem_width: null`` is the stem's default
        width), the one rule of what makes two networks the same."""
        out = {}
        for bb in self.backbone_combos():
            out.setdefault(self.reference_config("none", bb).key(), bb)
        return list(out.values())

    def size(self) -> int:
        """Number of distinct networks (by canonical key), counted from the per-stage options that
        :meth:`enumerate` walks (so the two agree), without enumerating."""
        return sum(math.prod(len(opts) for opts in self.stage_options(bb)) for bb in self.distinct_backbones())

    def enumerate(self, limit: int = 1_000_000):
        """Every distinct network of the space (canonical), in a fixed order."""
        if self.size() > limit:
            raise ConfigError(f"space has {self.size():,} networks, more than {limit:,} to enumerate; use size()")
        for bb in self.distinct_backbones():
            for stages in itertools.product(*self.stage_options(bb)):
                yield self.arch(bb, list(stages)).canonical()

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, trial) -> ArchConfig:
        """Define-by-run sampling through an Optuna trial; heads and reduction exist only where a
        stage has MRLA. Parameter names: ``backbone.KEY``, ``stageN.form``, ``stageN.heads``,
        ``stageN.reduction`` (stable across runs)."""
        bb = {}
        for k, choices in self.backbone.items():
            if len(choices) == 1:
                bb[k] = choices[0]
            elif k in self.kind.list_fields:
                labels = [",".join(map(str, c)) for c in choices]
                bb[k] = choices[labels.index(trial.suggest_categorical(f"backbone.{k}", labels))]
            else:
                bb[k] = trial.suggest_categorical(f"backbone.{k}", list(choices))
        stages = []
        for i, (st, width) in enumerate(zip(self.stages, self._widths(bb)), start=1):
            form = st.forms[0] if len(st.forms) == 1 else trial.suggest_categorical(f"stage{i}.form", list(st.forms))
            if form == "none":
                stages.append(StageConfig())
                continue
            if st.channels_per_head:
                d = _pick(trial, f"stage{i}.channels_per_head", st.channels_per_head)
                heads = width // d
            else:
                heads = _pick(trial, f"stage{i}.heads", st.heads)
            stages.append(StageConfig(form, heads, _pick(trial, f"stage{i}.reduction", st.reductions)))
        return self.arch(bb, stages).canonical()

    def params_for(self, arch: ArchConfig) -> Dict[str, Any]:
        """The Optuna parameters under which :meth:`sample` yields ``arch`` (to enqueue it)."""
        self._check_contains(arch, "arch")
        params: Dict[str, Any] = {}
        for k, choices in self.backbone.items():
            if len(choices) > 1:
                v = self.kind.fields_of(arch)[k]
                params[f"backbone.{k}"] = ",".join(map(str, v)) if k in self.kind.list_fields else v
        canon = arch.canonical()
        for i, (s, st, width) in enumerate(zip(canon.stages, self.stages, arch.widths()), start=1):
            if len(st.forms) > 1:
                params[f"stage{i}.form"] = s.form
            if s.form == "none":
                continue
            if st.channels_per_head:
                if len(st.channels_per_head) > 1:
                    params[f"stage{i}.channels_per_head"] = width // s.heads
            elif len(st.heads) > 1:
                params[f"stage{i}.heads"] = next(h for h in st.heads
                                                 if (h or paper_heads(s.form, width, self.kind.family)) == s.heads)
            if len(st.reductions) > 1:
                params[f"stage{i}.reduction"] = s.reduction
        return params

    def initial_configs(self) -> List[ArchConfig]:
        """The placements to evaluate first (search.initial), on the first backbone choice."""
        bb = self.backbone_combos()[0]
        return [self.reference_config(p, bb).canonical() for p in self.search["initial"]]

    # ---- cost-aware checks (need torch) ----------------------------------------------------
    def input_shape(self, bb: Optional[Dict[str, Any]] = None) -> Tuple[int, int, int, int]:
        bb = bb or self.backbone_combos()[0]
        r = self.proxy["resolution"]
        return (1, bb["in_chans"], r, r)

    def stage_options(self, bb: Dict[str, Any]) -> List[List[StageConfig]]:
        """The distinct (canonical) choices of every stage for one backbone."""
        out = []
        for st, width in zip(self.stages, self._widths(bb)):
            opts = [StageConfig()] if "none" in st.forms else []
            opts += [StageConfig(f, h, r) for f in st.forms if f != "none"
                     for h in st.resolved_heads(f, width, self.kind.family) for r in st.reductions]
            out.append(opts)
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The space with its defaults resolved (what a run directory freezes)."""
        def plain(v):
            return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
        bb = {k: (plain(v[0]) if len(v) == 1 else {"choices": plain(v)}) for k, v in self.backbone.items()}
        if self.backbone_type != "resnet":  # a ResNet space's frozen copy stays what it always was
            bb = {"type": self.backbone_type, **bb}
        stages = [dict(form=list(s.forms), reduction=list(s.reductions),
                       **({"channels_per_head": list(s.channels_per_head)} if s.channels_per_head
                          else {"heads": list(s.heads)})) for s in self.stages]
        return dict(name=self.name, seed=self.seed, backbone=bb, stages=stages, objectives=dict(self.objectives),
                    constraints=dict(self.constraints), proxy=dict(self.proxy),
                    search=dict(self.search, initial=plain(self.search["initial"])),
                    flops_convention=self.flops_convention)


def _pick(trial, name: str, choices):
    choices = list(choices)
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


def load_space(path, check_paths: bool = True) -> SearchSpace:
    """Read and validate a search-space YAML file (raises ConfigError naming the bad field)."""
    return SearchSpace.from_file(path, check_paths=check_paths)
