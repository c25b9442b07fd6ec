"""The timm backbone: MRLA around the blocks of the user's own timm CNN (``TimmConfig``; its stages
and widths are read off the model by :mod:`mrla_nas.arch.timm_layout`), optionally warm-started
from a local checkpoint of the plain model. :mod:`mrla_nas.models.build` builds it
(:func:`mrla_nas.models.timm_mrla.mrla_timm_model`).

>>> arch = TimmConfig.from_dict({"backbone": "timm", "model": "resnet18", "num_classes": 10,
...                              "stages": ["none", "light", "base", "none"]})
>>> arch.summary(), arch.widths(), arch.canonical().stages[1].heads
('resnet18 -LB-', (64, 128, 256, 512), 4)
>>> TimmConfig.from_yaml(arch.to_yaml()) == arch
True
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError, is_pos_int, show
from .base import (FORMS, Backbone, NetworkConfig, StageConfig, check_stage_divisibility, checked_fields, register,
                   stages_from)
from .timm_layout import TimmLayout, input_refusal, timm_layout

LIMITS = {"in_chans": 1024, "num_classes": 1_000_000}


def _number_in(value, lo: float, hi: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi


@dataclass(frozen=True)
class TimmConfig(NetworkConfig):
    """timm's ``model`` (any staged CNN) with MRLA per stage; ``pretrained``: a local checkpoint of
    the plain model every network starts from (its MRLA branches start as the identity)."""

    backbone: str = "timm"
    model: str = "resnet18"
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    pretrained: Optional[str] = None
    stages: Tuple[StageConfig, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], where: str = "arch") -> "TimmConfig":
        d = checked_fields(cls, data, where)
        for k in ("in_chans", "num_classes"):
            if k in d and not (is_pos_int(d[k]) and d[k] <= LIMITS[k]):
                raise ConfigError(f"{where}.{k}={show(d[k])}: expected an integer in [1, {LIMITS[k]:,}]")
        if not isinstance(d.get("model"), str):
            raise ConfigError(f"{where}.model={show(d.get('model'))}: expected a timm model name, e.g. convnext_atto")
        layout = timm_layout(d["model"], d.get("in_chans", cls.in_chans), f"{where}.model")
        d["stages"] = stages_from(d, len(layout.stages), where)
        arch = cls(**d)
        arch.validate(where)
        return arch

    @property
    def layout(self) -> TimmLayout:
        return timm_layout(self.model, self.in_chans)

    def validate(self, where: str = "arch") -> None:
        if self.backbone != "timm":
            raise ConfigError(f"{where}.backbone={show(self.backbone)}: expected 'timm'")
        layout = timm_layout(self.model, self.in_chans, f"{where}.model")
        if len(self.stages) != len(layout.stages):
            raise ConfigError(f"{where}.stages: {len(self.stages)} entries for the {len(layout.stages)} stages of "
                              f"{self.model}")
        if not _number_in(self.drop_path_rate, 0, 0.99):
            raise ConfigError(f"{where}.drop_path_rate={show(self.drop_path_rate)}: expected a number in [0, 0.99]")
        if self.pretrained is not None and not isinstance(self.pretrained, str):
            raise ConfigError(f"{where}.pretrained={show(self.pretrained)}: expected a checkpoint file or null")
        for i, (s, stage) in enumerate(zip(self.stages, layout.stages)):
            if s.form == "light" and not stage.light_blocks():
                raise ConfigError(f"{where}.stages[{i}].form='light': {light_refusal(layout, i)}")
        check_stage_divisibility(self.stages, self.widths(), where)

    def widths(self) -> Tuple[int, ...]:
        return self.layout.widths()

    def check_input(self, resolution: int, where: str = "input") -> None:
        if not is_pos_int(resolution) or resolution > 4096:
            raise ConfigError(f"{where}={show(resolution)}: expected an integer in [1, 4096]")
        why = input_refusal(self.model, self.in_chans, resolution)
        if why:
            raise ConfigError(f"{where}={resolution}: {why}; use a larger resolution")

    def canonical(self) -> "TimmConfig":
        return replace(self, drop_path_rate=float(self.drop_path_rate),
                       stages=self.canonical_stages(self.widths(), "resnet"))

    def summary(self) -> str:
        return f"{self.model} {self.stage_summary()}"

    def model_kwargs(self) -> Dict[str, Any]:
        start = {} if self.pretrained is None else {"warm_start": self.pretrained}
        return dict(model=self.model, in_chans=self.in_chans, num_classes=self.num_classes,
                    drop_path_rate=self.drop_path_rate, mrla=self.mrla_kwargs(), **start)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["stages"] = self._stage_dicts()
        if d["pretrained"] is None:  # as ResNet configs: the field only where there is a warm start
            del d["pretrained"]
        return d


def light_refusal(layout: TimmLayout, i: int) -> str:
    stage = layout.stages[i]
    return (f"stage {i + 1} of {layout.model} ({stage.path}) has no block whose shortcut is known (its blocks "
            "change shape without a projection, so MRLA-light has no o_prev); allowed there: none, base")


class TimmBackbone(Backbone):
    name = "timm"
    family = "resnet"  # CNN feature maps: the official ResNets' channels per head (32 light, 16 base)
    config_cls = TimmConfig
    space_defaults = dict(model=None, in_chans=3, num_classes=1000, drop_path_rate=0.0, pretrained=None)

    def check_field(self, key: str, value: Any, path: str) -> Any:
        if key == "model":
            if not isinstance(value, str):
                raise ConfigError(f"{path}={show(value)}: expected a timm model name (a staged CNN, e.g. "
                                  "convnext_atto, resnet18, regnetx_002, efficientnet_b0)")
            return value
        if key in ("in_chans", "num_classes") and not (is_pos_int(value) and value <= LIMITS[key]):
            raise ConfigError(f"{path}={show(value)}: expected an integer in [1, {LIMITS[key]:,}]")
        if key == "drop_path_rate" and not _number_in(value, 0, 0.99):
            raise ConfigError(f"{path}={show(value)}: expected a number in [0, 0.99]")
        if key == "pretrained" and value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}={show(value)}: expected a checkpoint file of the plain model, or null")
        return value

    def resolve_choices(self, choices: Dict[str, tuple], resolution: int) -> Dict[str, tuple]:
        """Every model a staged CNN timm builds, found before anything is written."""
        for i, name in enumerate(choices["model"]):
            where = "backbone.model" + (f"[{i}]" if len(choices["model"]) > 1 else "")
            for c in choices["in_chans"]:
                timm_layout(name, c, where)
        return choices

    def allowed_forms(self, bb: Dict[str, Any], stage: int) -> Tuple[str, ...]:
        layout = timm_layout(bb["model"], bb["in_chans"])
        return FORMS if layout.stages[stage].light_blocks() else ("none", "base")

    def form_refusal(self, bb: Dict[str, Any], stage: int) -> str:
        return light_refusal(timm_layout(bb["model"], bb["in_chans"]), stage)

    def stage_count(self, bb: Dict[str, Any]) -> int:
        return len(timm_layout(bb["model"], bb["in_chans"]).stages)

    def widths(self, bb: Dict[str, Any]) -> Tuple[int, ...]:
        return timm_layout(bb["model"], bb["in_chans"]).widths()

    def make(self, bb: Dict[str, Any], stages) -> TimmConfig:
        return TimmConfig(model=bb["model"], in_chans=bb["in_chans"], num_classes=bb["num_classes"],
                          drop_path_rate=bb["drop_path_rate"], pretrained=bb["pretrained"], stages=tuple(stages))

    def fields_of(self, arch: TimmConfig) -> Dict[str, Any]:
        return {k: getattr(arch, k) for k in self.space_defaults}

    def default_input_size(self, arch: TimmConfig) -> int:
        return 224

    def describe(self, arch: TimmConfig) -> List[str]:
        out = []
        layout = arch.layout
        for i, (s, stage) in enumerate(zip(arch.canonical().stages, layout.stages), start=1):
            extra = "" if s.form == "none" else f" heads={s.heads} reduction={s.reduction}"
            carried = ""
            if s.form == "light" and len(stage.light_blocks()) < stage.depth:
                carried = f" (in blocks {', '.join(str(b + 1) for b in stage.light_blocks())}: the others change shape)"
            out.append(f"stage {i} ({stage.path}): {stage.depth} blocks, width {stage.width}, MRLA {s.form}{extra}"
                       f"{carried}")
        return out


TIMM = register(TimmBackbone())
