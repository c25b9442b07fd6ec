"""What every backbone shares: the per-stage MRLA choice, the canonical key, serialisation, and the
registry through which the config reader and the search space find a backbone.

A backbone (``resnet.py``, ``vit.py``; a third is one new file here and its builder in
:mod:`mrla_nas.models.build`) owns its config dataclass, the fields and validators of a space's
``backbone:`` section and the MRLA width of each stage or group. ``SearchSpace``, the search,
``pareto``, ``export`` and the CLI only use this interface.
"""
from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import yaml

from ..errors import ConfigError, did_you_mean, is_pos_int, key_label, show
from ..yaml_io import load_yaml_text
from .paper_defaults import paper_heads

FORMS = ("none", "light", "base")


@dataclass(frozen=True)
class StageConfig:
    """MRLA in one stage (ResNet) or group of blocks (ViT): ``form`` none/light/base, ``heads``
    (None: the paper's), ``reduction`` (None: the paper's Conv1d Q/K projection; r: an SE-style
    C -> C/r -> C one)."""

    form: str = "none"
    heads: Optional[int] = None
    reduction: Optional[int] = None

    def short(self) -> str:
        return {"none": "-", "light": "L", "base": "B"}[self.form]


def stage_from(s, where: str) -> StageConfig:
    """A stage entry of a config file: a form name or a mapping with form/heads/reduction."""
    if isinstance(s, StageConfig):
        return s
    if isinstance(s, str):
        s = {"form": s}
    if not isinstance(s, dict):
        raise ConfigError(f"{where}={show(s)}: expected a form name or a mapping with form/heads/reduction")
    allowed = {"form", "heads", "reduction"}
    for k in s:
        if k not in allowed:
            raise ConfigError(f"{where}.{key_label(k)}: unknown key{did_you_mean(k, allowed)}; "
                              f"allowed: {sorted(allowed)}")
    form = s.get("form", "none")
    if form not in FORMS:
        raise ConfigError(f"{where}.form={show(form)}: allowed: {list(FORMS)}{did_you_mean(form, FORMS)}")
    for k in ("heads", "reduction"):
        if s.get(k) is not None and not is_pos_int(s[k]):
            raise ConfigError(f"{where}.{k}={show(s[k])}: expected a positive integer or null")
    return StageConfig(form, s.get("heads"), s.get("reduction"))


def stages_from(data: Dict[str, Any], n: int, where: str, word: str = "stage") -> Tuple[StageConfig, ...]:
    """A config's ``stages``: one entry per stage (or group), or one for all; default no MRLA."""
    stages = data.get("stages", ["none"] * n)
    if isinstance(stages, (str, dict)):
        stages = [stages] * n
    if not isinstance(stages, (list, tuple)):
        raise ConfigError(f"{where}.stages={show(stages)}: expected a list with one entry per {word}")
    return tuple(stage_from(s, f"{where}.stages[{i}]") for i, s in enumerate(stages))


def checked_fields(cls, data, where: str) -> Dict[str, Any]:
    """A config mapping whose keys are all fields of the dataclass ``cls`` (a copy), or a one-line
    ConfigError naming the first that is not."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    allowed = set(cls.__dataclass_fields__)
    for k in data:
        if k not in allowed:
            raise ConfigError(f"{where}.{key_label(k)}: unknown key{did_you_mean(k, allowed)}; "
                              f"allowed: {sorted(allowed)}")
    return dict(data)


def check_stage_divisibility(stages, widths, where: str) -> None:
    for i, (s, width) in enumerate(zip(stages, widths)):
        if s.form == "none":
            continue
        if s.heads is not None and width % s.heads:
            raise ConfigError(f"{where}.stages[{i}].heads={s.heads}: must divide the width {width}")
        if s.reduction is not None and width % s.reduction:
            raise ConfigError(f"{where}.stages[{i}].reduction={s.reduction}: must divide the width {width}")


class NetworkConfig:
    """Mixin of the config dataclasses: canonical key, summary, YAML/JSON round trip.

    A subclass defines ``backbone`` (its registry name), ``canonical()``, ``to_dict()``,
    ``from_dict()``, ``widths()``, ``summary()`` and ``model_kwargs()``.
    """

    backbone = ""

    def key(self) -> str:
        """Canonical key: equal for configs that build the same network."""
        blob = json.dumps(self.canonical().to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def canonical_stages(self, widths, family: str) -> Tuple[StageConfig, ...]:
        """Every stage with MRLA given its head count (the paper's default where unset); 'none' bare."""
        return tuple(StageConfig() if s.form == "none" else
                     StageConfig(s.form, s.heads or paper_heads(s.form, w, family), s.reduction)
                     for s, w in zip(self.stages, widths))

    def mrla_kwargs(self) -> List[Dict[str, Any]]:
        """The models' ``mrla`` argument: one spec per stage or group."""
        return [dict(form=s.form, heads=s.heads, reduction=s.reduction) for s in self.stages]

    def stage_summary(self) -> str:
        return "".join(s.short() for s in self.stages)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_yaml(cls, text: str):
        return cls.from_dict(load_yaml_text(text, "arch"))

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def _stage_dicts(self) -> List[Dict[str, Any]]:
        return [asdict(s) for s in self.stages]


class Backbone(abc.ABC):
    """A backbone family as the search space and the builder see it (one instance per family)."""

    name = ""
    family = ""                      # whose paper default of channels per head applies (paper_defaults)
    config_cls: type = NetworkConfig
    space_defaults: Dict[str, Any] = {}   # the fields of a space's backbone section, with defaults
    list_fields: Tuple[str, ...] = ()     # fields whose one value is a list (choices: a list of lists)
    stage_word = "stage"

    @abc.abstractmethod
    def check_field(self, key: str, value: Any, path: str) -> Any:
        """Validate one value (one choice) of a backbone field; raise ConfigError naming ``path``."""
        ...

    @abc.abstractmethod
    def make(self, bb: Dict[str, Any], stages) -> NetworkConfig:
        """The config of backbone choice ``bb`` (one value per field) with ``stages``."""
        ...

    @abc.abstractmethod
    def fields_of(self, arch: NetworkConfig) -> Dict[str, Any]:
        """The backbone part of a config, as a space's choices name it (for ``contains``)."""
        ...

    def allowed_forms(self, bb: Dict[str, Any], stage: int) -> Tuple[str, ...]:
        """The MRLA forms stage ``stage`` of backbone choice ``bb`` can carry (a timm CNN's stage
        whose blocks all change shape has no shortcut for MRLA-light)."""
        return FORMS

    def form_refusal(self, bb: Dict[str, Any], stage: int) -> str:
        """Why a form outside :meth:`allowed_forms` cannot run in that stage."""
        return ""

    def same_choice(self, key: str, a: Any, b: Any, bb: Dict[str, Any]) -> bool:
        """Whether two values of field ``key`` are the same backbone (``stem_width: null`` is the stem's)."""
        return a == b

    def resolve_choices(self, choices: Dict[str, tuple], resolution: int) -> Dict[str, tuple]:
        """A space's backbone choices once the proxy's resolution is known (ViT: its image size)."""
        return choices

    @abc.abstractmethod
    def stage_count(self, bb: Dict[str, Any]) -> int:
        ...

    @abc.abstractmethod
    def widths(self, bb: Dict[str, Any]) -> Tuple[int, ...]:
        """The MRLA width of each stage or group of backbone choice ``bb``."""
        ...

    @abc.abstractmethod
    def default_input_size(self, arch: NetworkConfig) -> int:
        ...

    @abc.abstractmethod
    def describe(self, arch: NetworkConfig) -> List[str]:
        """One line per stage or group, for ``mrla-nas build``."""
        ...


_REGISTRY: Dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    _REGISTRY[backbone.name] = backbone
    return backbone


def get_backbone(name: str, where: str = "backbone.type") -> Backbone:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"{where}={show(name)}: allowed: {', '.join(sorted(_REGISTRY))}"
                          f"{did_you_mean(name, _REGISTRY)}")
    return _REGISTRY[name]


def backbone_names() -> List[str]:
    return sorted(_REGISTRY)


def config_from_dict(data: Dict[str, Any], where: str = "arch") -> NetworkConfig:
    """The config of any backbone from a mapping (``backbone: vit``; without it, a ResNet), or from an
    exported file's ``arch:`` section."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    if "arch" in data and isinstance(data["arch"], dict):  # an exported file: arch + metrics
        return config_from_dict(data["arch"], f"{where}.arch")
    name = data.get("backbone", "resnet")
    return get_backbone(name, f"{where}.backbone").config_cls.from_dict(data, where)
