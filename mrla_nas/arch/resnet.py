"""The ResNet backbone: ``ArchConfig`` (timm's ResNet layout, MRLA per stage) and its fields in a
search space. No torch: :mod:`mrla_nas.models.build` builds it (:class:`mrla_nas.models.MRLAResNet`).

>>> arch = ArchConfig.from_dict({"block": "basic", "layers": [3, 3, 3], "channels": [16, 32, 64],
...                              "stem": "small", "stages": ["light", "none", {"form": "base"}]})
>>> arch.summary()
'basic[3,3,3] L-B'
>>> ArchConfig.from_yaml(arch.to_yaml()) == arch
True
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError, did_you_mean, is_pos_int, key_label, show
from .base import Backbone, NetworkConfig, StageConfig, check_stage_divisibility, register, stages_from

BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}  # block type -> channel expansion
STEMS = ("7x7", "deep", "small")
DEFAULT_STEM_WIDTH = {"7x7": 64, "deep": 32, "small": 16}
# Bounds checked before anything is built: far beyond the networks MRLA was published on, they keep
# a typo or a hostile file from asking for terabytes (one source for the configs and the spaces).
LIMITS = {"stages": 8, "blocks": 512, "channels": 8192, "stem_width": 4096, "in_chans": 1024,
          "num_classes": 1_000_000}
MAX_PARAMS = 2_000_000_000           # about 8 GB of float32 weights
MAX_FEATURE_MAP = 1 << 26            # elements of one image's largest feature map (256 MiB in float32)


@dataclass(frozen=True)
class ArchConfig(NetworkConfig):
    """A ResNet: timm's block type, blocks and widths per stage, stem; MRLA per stage."""

    backbone = "resnet"  # a class attribute, not a field: ResNet configs keep their keys without it

    block: str = "bottleneck"
    layers: Tuple[int, ...] = (3, 4, 6, 3)
    channels: Tuple[int, ...] = (64, 128, 256, 512)
    stem: str = "7x7"
    stem_width: Optional[int] = None
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    mrla_drop_path_rate: float = 0.0
    pretrained: Optional[str] = None   # a checkpoint of the plain network every MRLA network starts from
    stages: Tuple[StageConfig, ...] = field(default_factory=tuple)

    # ---- construction and validation -------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Dict[str, Any], where: str = "arch") -> "ArchConfig":
        """Build and validate; errors name the field (``where`` is the path prefix)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        if "arch" in data and isinstance(data["arch"], dict):  # an exported file: arch + metrics
            return cls.from_dict(data["arch"], f"{where}.arch")
        data = {k: v for k, v in data.items() if not (k == "backbone" and v == "resnet")}
        allowed = {f for f in cls.__dataclass_fields__}
        for k in data:
            if k not in allowed:
                raise ConfigError(f"{where}.{key_label(k)}: unknown key{did_you_mean(k, allowed)}; "
                                  f"allowed: {sorted(allowed)}")
        d = dict(data)
        for key, limit in (("layers", LIMITS["blocks"]), ("channels", LIMITS["channels"])):
            if key in d:
                v = d[key]
                if (not isinstance(v, (list, tuple)) or not v or len(v) > LIMITS["stages"]
                        or not all(is_pos_int(x) and x <= limit for x in v)):
                    raise ConfigError(f"{where}.{key}={show(v)}: expected a list of 1 to {LIMITS['stages']} "
                                      f"integers in [1, {limit}], one per stage")
                d[key] = tuple(v)
        d["stages"] = stages_from(d, len(d.get("layers", cls.layers)), where)
        arch = cls(**d)
        arch.validate(where)
        return arch

    def validate(self, where: str = "arch") -> None:
        if not (isinstance(self.block, str) and self.block in BLOCK_EXPANSION):
            raise ConfigError(f"{where}.block={show(self.block)}: allowed: {list(BLOCK_EXPANSION)}"
                              f"{did_you_mean(self.block, BLOCK_EXPANSION)}")
        if not (isinstance(self.stem, str) and self.stem in STEMS):
            raise ConfigError(f"{where}.stem={show(self.stem)}: allowed: {list(STEMS)}{did_you_mean(self.stem, STEMS)}")
        if len(self.layers) != len(self.channels):
            raise ConfigError(f"{where}.channels: {len(self.channels)} stages, but layers has {len(self.layers)}")
        if len(self.stages) != len(self.layers):
            raise ConfigError(f"{where}.stages: {len(self.stages)} entries for {len(self.layers)} stages")
        for key in ("in_chans", "num_classes"):
            v = getattr(self, key)
            if not is_pos_int(v) or v > LIMITS[key]:
                raise ConfigError(f"{where}.{key}={show(v)}: expected an integer in [1, {LIMITS[key]:,}]")
        if self.stem_width is not None and not (is_pos_int(self.stem_width)
                                                and self.stem_width <= LIMITS["stem_width"]):
            raise ConfigError(f"{where}.stem_width={show(self.stem_width)}: expected an integer in "
                              f"[1, {LIMITS['stem_width']}] or null")
        for key in ("drop_path_rate", "mrla_drop_path_rate"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1:
                raise ConfigError(f"{where}.{key}={show(v)}: expected a number in [0, 1)")
        if self.pretrained is not None and not isinstance(self.pretrained, str):
            raise ConfigError(f"{where}.pretrained={show(self.pretrained)}: expected a checkpoint file or null")
        if self.params_bound() > MAX_PARAMS:
            raise ConfigError(f"{where}: about {self.params_bound():,} parameters, more than the "
                              f"{MAX_PARAMS:,} mrla-nas builds; check layers and channels")
        check_stage_divisibility(self.stages, self.widths(), where)

    # ---- derived ---------------------------------------------------------------------------
    def widths(self) -> Tuple[int, ...]:
        """Output channels of each stage (the width MRLA runs at)."""
        return tuple(c * BLOCK_EXPANSION[self.block] for c in self.channels)

    def params_bound(self) -> int:
        """An upper bound of the parameter count, from the layout alone (nothing built): convolutions,
        projection shortcuts, MRLA's Q/K projections at their largest, the classifier."""
        sw = self.stem_width or DEFAULT_STEM_WIDTH[self.stem]
        n = {"7x7": 49 * self.in_chans * sw, "small": 9 * self.in_chans * sw,
             "deep": 9 * (self.in_chans * sw + sw * sw + 2 * sw * sw)}[self.stem]
        inplanes = 2 * sw if self.stem == "deep" else sw
        for blocks, c, width in zip(self.layers, self.channels, self.widths()):
            for b in range(blocks):
                if self.block == "basic":
                    n += 9 * inplanes * c + 9 * c * c
                else:
                    n += inplanes * c + 9 * c * c + c * width
                n += inplanes * width if b == 0 else 0      # projection shortcut
                n += 4 * width * width + 16 * width        # MRLA (an SE-style projection at r=1), BNs
                inplanes = width
        return n + inplanes * self.num_classes + self.num_classes

    def largest_feature_map(self, resolution: int) -> int:
        """Elements of one image's largest feature map at ``resolution`` (the stem's or a stage's)."""
        stride = 1 if self.stem == "small" else 2
        sw = (self.stem_width or DEFAULT_STEM_WIDTH[self.stem]) * (2 if self.stem == "deep" else 1)
        side = -(-resolution // stride)
        out = sw * side * side
        side = side if self.stem == "small" else -(-side // 2)   # the stem's max-pool
        for i, width in enumerate(self.widths()):
            side = side if i == 0 else -(-side // 2)
            out = max(out, width * side * side)
        return out

    def check_input(self, resolution: int, where: str = "input") -> None:
        """ConfigError when one image of ``resolution`` px would need an unreasonable feature map."""
        if self.largest_feature_map(resolution) > MAX_FEATURE_MAP:
            raise ConfigError(f"{where}={resolution}: a {resolution} px image needs a feature map of "
                              f"{self.largest_feature_map(resolution):,} values in this network, more than the "
                              f"{MAX_FEATURE_MAP:,} mrla-nas allows; lower the resolution or the widths")

    def canonical(self) -> "ArchConfig":
        """The same network with every default made explicit and every irrelevant field dropped."""
        return replace(self, stem_width=self.stem_width or DEFAULT_STEM_WIDTH[self.stem],
                       drop_path_rate=float(self.drop_path_rate), mrla_drop_path_rate=float(self.mrla_drop_path_rate),
                       stages=self.canonical_stages(self.widths(), "resnet"))

    def summary(self) -> str:
        """A short human-readable label, e.g. ``bottleneck[3,4,6,3] LL-B``."""
        return f"{self.block}[{','.join(map(str, self.layers))}] {self.stage_summary()}"

    def model_kwargs(self) -> Dict[str, Any]:
        """Arguments of :class:`mrla_nas.models.MRLAResNet` for this config."""
        return dict(block=self.block, layers=self.layers, channels=self.channels, stem_type=self.stem,
                    stem_width=self.stem_width, in_chans=self.in_chans, num_classes=self.num_classes,
                    drop_path_rate=self.drop_path_rate, mrla_drop_path_rate=self.mrla_drop_path_rate,
                    mrla=self.mrla_kwargs(), **({} if self.pretrained is None else {"warm_start": self.pretrained}))

    # ---- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["layers"], d["channels"] = list(self.layers), list(self.channels)
        d["stages"] = [asdict(s) for s in self.stages]
        if d["pretrained"] is None:  # configs without a warm start keep the keys they always had
            del d["pretrained"]
        return d


class ResNetBackbone(Backbone):
    name = "resnet"
    family = "resnet"
    config_cls = ArchConfig
    space_defaults = dict(block="bottleneck", layers=[3, 4, 6, 3], channels=[64, 128, 256, 512], stem="7x7",
                          stem_width=None, in_chans=3, num_classes=1000, drop_path_rate=0.0, mrla_drop_path_rate=0.0,
                          pretrained=None)
    list_fields = ("layers", "channels")

    def check_field(self, key: str, value: Any, path: str) -> Any:
        if key in self.list_fields:
            hi = LIMITS["blocks" if key == "layers" else "channels"]
            if not isinstance(value, list) or not value or len(value) > LIMITS["stages"]:
                raise ConfigError(f"{path}={show(value)}: expected a list of 1 to {LIMITS['stages']} positive "
                                  "integers, one per stage")
            for j, x in enumerate(value):
                if not is_pos_int(x) or x > hi:
                    raise ConfigError(f"{path}[{j}]={show(x)}: expected an integer in [1, {hi:,}]")
            return tuple(value)
        if key in ("block", "stem") and not (isinstance(value, str)
                                             and value in (BLOCK_EXPANSION if key == "block" else STEMS)):
            allowed = list(BLOCK_EXPANSION) if key == "block" else list(STEMS)
            raise ConfigError(f"{path}={show(value)}: allowed: {', '.join(allowed)}{did_you_mean(value, allowed)}")
        if key == "stem_width" and value is not None and not (is_pos_int(value) and value <= LIMITS["stem_width"]):
            raise ConfigError(f"{path}={show(value)}: expected an integer in [1, {LIMITS['stem_width']:,}] or null")
        if key in ("in_chans", "num_classes") and not (is_pos_int(value) and value <= LIMITS[key]):
            raise ConfigError(f"{path}={show(value)}: expected an integer in [1, {LIMITS[key]:,}]")
        if key == "pretrained" and value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}={show(value)}: expected a checkpoint file of the plain network, or null")
        if key in ("drop_path_rate", "mrla_drop_path_rate") and (
                not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 0.99):
            raise ConfigError(f"{path}={show(value)}: expected a number in [0, 0.99]")
        return value

    def stage_count(self, bb: Dict[str, Any]) -> int:
        return len(bb["layers"])

    def widths(self, bb: Dict[str, Any]) -> Tuple[int, ...]:
        return tuple(c * BLOCK_EXPANSION[bb["block"]] for c in bb["channels"])

    def make(self, bb: Dict[str, Any], stages) -> ArchConfig:
        return ArchConfig(block=bb["block"], layers=tuple(bb["layers"]), channels=tuple(bb["channels"]),
                          stem=bb["stem"], stem_width=bb["stem_width"], in_chans=bb["in_chans"],
                          num_classes=bb["num_classes"], drop_path_rate=bb["drop_path_rate"],
                          mrla_drop_path_rate=bb["mrla_drop_path_rate"], pretrained=bb["pretrained"],
                          stages=tuple(stages))

    def fields_of(self, arch: ArchConfig) -> Dict[str, Any]:
        return {k: getattr(arch, k) for k in self.space_defaults}

    def same_choice(self, key, a, b, bb) -> bool:
        if key == "stem_width":  # null is the stem's default width
            return (a or DEFAULT_STEM_WIDTH[bb["stem"]]) == (b or DEFAULT_STEM_WIDTH[bb["stem"]])
        return a == b

    def default_input_size(self, arch: ArchConfig) -> int:
        return 32 if arch.stem == "small" else 224

    def describe(self, arch: ArchConfig) -> List[str]:
        out = []
        for i, (s, w) in enumerate(zip(arch.canonical().stages, arch.widths()), start=1):
            extra = "" if s.form == "none" else f" heads={s.heads} reduction={s.reduction}"
            out.append(f"stage {i}: {arch.layers[i - 1]} x {arch.block}, width {w}, MRLA {s.form}{extra}")
        return out


RESNET = register(ResNetBackbone())
