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
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..arch import ArchConfig, Backbone, NetworkConfig, StageConfig, get_backbone, paper_heads
from ..cost import CONVENTIONS
from ..errors import ConfigError, is_int, show
from ..yaml_io import load_yaml_file, load_yaml_text
from .schema import (TOP_KEYS, StageChoices, check_keys, check_run_name, fail, one_of, read_backbone,
                     read_constraints, read_latency, read_objectives, read_proxy, read_search, read_stages,
                     rungs_for,
                     stage_count)

def _check_resources(proxy: Dict[str, Any], search: Dict[str, Any]) -> None:
    """The proxy's device against the trials' GPU share: a CUDA trial needs a share (else Ray would
    put any number of them on one GPU, or on a node without one), a CPU trial holds none."""
    gpus = search["gpus_per_trial"]
    if proxy["device"] == "cuda" and not gpus:
        raise ConfigError("search.gpus_per_trial=0: proxy.device='cuda' needs a GPU share per trial (1, or 0.25 for "
                          "four trials per GPU); or set proxy.device: auto or cpu")
    if proxy["device"] == "cpu" and gpus:
        raise ConfigError(f"search.gpus_per_trial={show(gpus)}: proxy.device='cpu' trains on the CPU, so the trials "
                          "would hold GPUs they never use; set it to 0, or proxy.device: auto or cuda")
    if proxy["precision"] == "fp16" and not gpus:
        raise ConfigError("proxy.precision='fp16': trials without a GPU share (search.gpus_per_trial=0) train on "
                          "the CPU, where fp16 is not supported; allowed there: fp32, bf16")


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
    latency: Optional[Dict[str, Any]] = None   # how latency is measured; None: not measured

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
        check_keys(data, TOP_KEYS, "")
        if "name" not in data:
            raise ConfigError("name: missing; give the space a name (used for the run directory)")
        name = check_run_name(data["name"], "name")
        seed = data.get("seed", 0)
        if not is_int(seed) or not 0 <= seed < 2 ** 32:
            fail("seed", seed, "expected an integer in [0, 2**32)")

        kind, backbone = read_backbone(data.get("backbone", {}))
        proxy = read_proxy(data.get("proxy", {}), check_paths)
        backbone = kind.resolve_choices(backbone, proxy["resolution"])
        n_stages = stage_count(kind, backbone)
        stages = read_stages(data.get("stages", {"form": ["none", "light"]}), n_stages)
        objectives = read_objectives(data.get("objectives", {"accuracy": "max", "flops": "min"}))
        constraints = read_constraints(data.get("constraints", {}))
        search = read_search(data.get("search", {}), n_stages)
        convention = one_of(data.get("flops_convention", "fvcore"), CONVENTIONS, "flops_convention")
        _check_resources(proxy, search)
        latency = (read_latency(data.get("latency") or {}, proxy)
                   if "latency" in objectives or data.get("latency") is not None else None)
        space = cls(name, seed, backbone, stages, objectives, constraints, proxy, search, convention, kind.name,
                    latency)
        space._check_divisibility()
        space._check_sizes()
        if check_paths:
            space._check_warm_starts()
        if search["scheduler"] != "none":
            if not rungs_for(proxy["epochs"], search["grace_period"], search["reduction_factor"], search["rungs"]):
                raise ConfigError(f"search.scheduler={search['scheduler']!r}: no rung below proxy.epochs="
                                  f"{proxy['epochs']} (grace_period {search['grace_period']}); early stopping needs "
                                  "more epochs than its first rung, or scheduler: none")
        for i, ref in enumerate(search["initial"]):
            space._check_contains(space.reference_config(ref, space.backbone_combos()[0]), f"search.initial[{i}]")
        return space

    # ---- resources ---------------------------------------------------------------------------
    def trial_resources(self) -> Dict[str, float]:
        """What Ray Tune reserves for one trial: ``search.cpus_per_trial`` CPUs (default: the proxy's
        torch threads plus its DataLoader workers) and ``search.gpus_per_trial`` GPUs."""
        cpus = self.search["cpus_per_trial"] or self.proxy["threads"] + self.proxy["workers"]
        return {"cpu": cpus, "gpu": self.search["gpus_per_trial"]}

    # ---- objectives --------------------------------------------------------------------------
    def objective_names(self) -> List[str]:
        """The objectives, in the order of the study's values: accuracy, then flops, params, latency
        (those the space has)."""
        return list(self.objectives)

    def directions(self) -> List[str]:
        """Optuna's study directions for :meth:`objective_names`."""
        return ["maximize" if m == "max" else "minimize" for m in self.objectives.values()]

    def objective_values(self, accuracy: Optional[float], flops: float, params: float,
                         latency: Optional[float] = None) -> List[Optional[float]]:
        """A network's measurements as the study's values, in :meth:`objective_names`' order
        (``latency``: the value :func:`~mrla_nas.cost.latency.objective_value` gives)."""
        measured = {"accuracy": accuracy, "flops": flops, "params": params, "latency": latency}
        return [measured[name] for name in self.objective_names()]

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

    def _check_warm_starts(self) -> None:
        """Every ``backbone.pretrained`` checkpoint is the plain network's (built once per choice, the
        checkpoint checked key by key): a one-line error here rather than a failure in every trial."""
        if not any(p is not None for p in self.backbone.get("pretrained", ())):
            return
        from ..models.build import build_model

        for bb in self.backbone_combos():
            if bb.get("pretrained") is not None:
                build_model(self.reference_config("none", bb))

    def _label(self, bb: Dict[str, Any]) -> str:
        return ", ".join(f"{k}={bb[k]}" for k, v in self.backbone.items() if len(v) > 1)

    def _check_divisibility(self) -> None:
        for bb in self.backbone_combos():
            for i, (st, width) in enumerate(zip(self.stages, self._widths(bb))):
                base = "stages" if len(set(self.stages)) == 1 and len(self.stages) > 1 else f"stages[{i}]"
                for form in st.forms:
                    if form not in self.kind.allowed_forms(bb, i):
                        raise ConfigError(f"stages[{i}].form: {form!r} {self.kind.form_refusal(bb, i)}; give "
                                          f"stage {i + 1} its own entry in a list of stages")
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

    def latency_reference(self) -> NetworkConfig:
        """The network every latency of the space is a ratio to: its first backbone choice without
        MRLA. One reference for all, so that ratios compare across depths and widths too."""
        return self.reference_config("none", self.backbone_combos()[0])

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
                    flops_convention=self.flops_convention,
                    **({"latency": dict(self.latency)} if self.latency is not None else {}))


def _pick(trial, name: str, choices):
    choices = list(choices)
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


def load_space(path, check_paths: bool = True) -> SearchSpace:
    """Read and validate a search-space YAML file (raises ConfigError naming the bad field)."""
    return SearchSpace.from_file(path, check_paths=check_paths)
