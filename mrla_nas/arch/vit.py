"""The ViT backbone: ``ViTConfig`` (timm's VisionTransformer: embedding width, depth, heads, patch and
image size; MRLA per group of blocks) and its fields in a search space. No torch:
:mod:`mrla_nas.models.build` builds it (:class:`mrla_nas.models.MRLAVisionTransformer`).

>>> arch = ViTConfig.from_dict({"backbone": "vit", "embed_dim": 64, "depth": 8, "num_heads": 2,
...                             "patch_size": 4, "img_size": 28, "stages": ["light", "base"]})
>>> arch.summary(), arch.canonical().stages[0].heads
('vit[64x8,p4] LB', 4)
>>> ViTConfig.from_yaml(arch.to_yaml()) == arch
True
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Tuple

from ..errors import ConfigError, is_pos_int, show
from .base import (Backbone, NetworkConfig, StageConfig, check_stage_divisibility, checked_fields, register,
                   stages_from)

LIMITS = {"embed_dim": 4096, "depth": 256, "num_heads": 256, "patch_size": 256, "img_size": 4096,
          "in_chans": 1024, "num_classes": 1_000_000, "group_size": 256, "tokens": 16_384}
MAX_PARAMS = 2_000_000_000


@dataclass(frozen=True)
class ViTConfig(NetworkConfig):
    """A ViT with one class token and a square patch grid; ``stages``: one MRLA entry per group of
    ``group_size`` blocks (the official MRLA-base resets its memory every 4)."""

    backbone: str = "vit"
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    patch_size: int = 16
    img_size: int = 224
    mlp_ratio: float = 4.0
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    group_size: int = 4
    stages: Tuple[StageConfig, ...] = field(default_factory=tuple)

    @property
    def groups(self) -> int:
        return -(-self.depth // self.group_size)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], where: str = "arch") -> "ViTConfig":
        d = checked_fields(cls, data, where)
        for k in ("embed_dim", "depth", "num_heads", "patch_size", "img_size", "in_chans", "num_classes",
                  "group_size"):
            if k in d and not (is_pos_int(d[k]) and d[k] <= LIMITS[k]):
                raise ConfigError(f"{where}.{k}={show(d[k])}: expected an integer in [1, {LIMITS[k]:,}]")
        depth, size = d.get("depth", cls.depth), d.get("group_size", cls.group_size)
        d["stages"] = stages_from(d, -(-depth // size), where, "group of blocks")
        arch = cls(**d)
        arch.validate(where)
        return arch

    def validate(self, where: str = "arch") -> None:
        if self.backbone != "vit":
            raise ConfigError(f"{where}.backbone={show(self.backbone)}: expected 'vit'")
        if len(self.stages) != self.groups:
            raise ConfigError(f"{where}.stages: {len(self.stages)} entries for {self.groups} groups of "
                              f"{self.group_size} blocks (depth {self.depth})")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"{where}.num_heads={self.num_heads}: must divide embed_dim {self.embed_dim}")
        if self.img_size % self.patch_size:
            raise ConfigError(f"{where}.patch_size={self.patch_size}: must divide img_size {self.img_size}")
        if (self.img_size // self.patch_size) ** 2 > LIMITS["tokens"]:
            raise ConfigError(f"{where}: {(self.img_size // self.patch_size) ** 2:,} patch tokens, more than "
                              f"{LIMITS['tokens']:,}; use a larger patch_size")
        for k, lo, hi in (("mlp_ratio", 0.25, 16), ("drop_path_rate", 0, 0.99)):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"{where}.{k}={show(v)}: expected a number in [{lo}, {hi}]")
        if self.params_bound() > MAX_PARAMS:
            raise ConfigError(f"{where}: about {self.params_bound():,} parameters, more than the {MAX_PARAMS:,} "
                              "mrla-nas builds")
        check_stage_divisibility(self.stages, self.widths(), where)

    def widths(self) -> Tuple[int, ...]:
        return (self.embed_dim,) * self.groups

    def params_bound(self) -> int:
        c, hidden = self.embed_dim, int(self.embed_dim * self.mlp_ratio)
        per_block = 4 * c * c + 2 * c * hidden + 20 * c + 4 * c * c  # attention, MLP, norms, MRLA at its largest
        tokens = (self.img_size // self.patch_size) ** 2 + 1
        return (self.in_chans * self.patch_size ** 2 * c + tokens * c + self.depth * per_block
                + c * self.num_classes)

    def check_input(self, resolution: int, where: str = "input") -> None:
        if resolution != self.img_size:
            raise ConfigError(f"{where}={resolution}: this ViT takes {self.img_size} px images "
                              "(its position embedding fixes the input size)")

    def canonical(self) -> "ViTConfig":
        return replace(self, mlp_ratio=float(self.mlp_ratio), drop_path_rate=float(self.drop_path_rate),
                       stages=self.canonical_stages([self.embed_dim] * len(self.stages), "vit"))

    def summary(self) -> str:
        return f"vit[{self.embed_dim}x{self.depth},p{self.patch_size}] {self.stage_summary()}"

    def model_kwargs(self) -> Dict[str, Any]:
        return dict(img_size=self.img_size, patch_size=self.patch_size, embed_dim=self.embed_dim, depth=self.depth,
                    num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, in_chans=self.in_chans,
                    num_classes=self.num_classes, drop_path_rate=self.drop_path_rate,
                    mrla=self.mrla_kwargs(),
                    mrla_group_size=self.group_size)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["stages"] = self._stage_dicts()
        return d


class ViTBackbone(Backbone):
    name = "vit"
    family = "vit"
    config_cls = ViTConfig
    stage_word = "group"
    # img_size null: the proxy's resolution
    space_defaults = dict(embed_dim=192, depth=12, num_heads=3, patch_size=16, img_size=None, mlp_ratio=4.0,
                          in_chans=3, num_classes=1000, drop_path_rate=0.0, group_size=4)

    def check_field(self, key: str, value: Any, path: str) -> Any:
        if key == "img_size" and value is None:
            return value
        if key in ("mlp_ratio", "drop_path_rate"):
            lo, hi = (0.25, 16) if key == "mlp_ratio" else (0, 0.99)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
                raise ConfigError(f"{path}={show(value)}: expected a number in [{lo}, {hi}]")
            return value
        if not (is_pos_int(value) and value <= LIMITS[key]):
            raise ConfigError(f"{path}={show(value)}: expected an integer in [1, {LIMITS[key]:,}]"
                              + (" or null (the proxy's resolution)" if key == "img_size" else ""))
        return value

    def stage_count(self, bb: Dict[str, Any]) -> int:
        return -(-bb["depth"] // bb["group_size"])

    def widths(self, bb: Dict[str, Any]) -> Tuple[int, ...]:
        return (bb["embed_dim"],) * self.stage_count(bb)

    def resolve_choices(self, choices: Dict[str, tuple], resolution: int) -> Dict[str, tuple]:
        """``img_size: null`` is the proxy's resolution; any other size could not take its images."""
        for v in choices["img_size"]:
            if v is not None and v != resolution:
                raise ConfigError(f"backbone.img_size={v}: the proxy trains at proxy.resolution={resolution}; "
                                  "leave img_size null or make the two equal")
        return dict(choices, img_size=(resolution,))

    def make(self, bb: Dict[str, Any], stages) -> ViTConfig:
        return ViTConfig(embed_dim=bb["embed_dim"], depth=bb["depth"], num_heads=bb["num_heads"],
                         patch_size=bb["patch_size"], img_size=bb["img_size"], mlp_ratio=bb["mlp_ratio"],
                         in_chans=bb["in_chans"], num_classes=bb["num_classes"], drop_path_rate=bb["drop_path_rate"],
                         group_size=bb["group_size"], stages=tuple(stages))

    def fields_of(self, arch: ViTConfig) -> Dict[str, Any]:
        return {k: getattr(arch, k) for k in self.space_defaults}

    def default_input_size(self, arch: ViTConfig) -> int:
        return arch.img_size

    def describe(self, arch: ViTConfig) -> List[str]:
        out = []
        c = arch.canonical()
        for i, s in enumerate(c.stages):
            first, last = i * arch.group_size, min((i + 1) * arch.group_size, arch.depth) - 1
            extra = "" if s.form == "none" else f" heads={s.heads} reduction={s.reduction}"
            out.append(f"group {i + 1}: blocks {first}-{last}, width {arch.embed_dim}, MRLA {s.form}{extra}")
        return out


VIT = register(ViTBackbone())
