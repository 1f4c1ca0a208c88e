"""SMGeo model configuration: sizes, switches for ablations and loss weights.

A config lives as ``config.json`` beside its weights (``models/<name>/``), so a
weights folder is self-describing. Unknown keys are an error rather than being
ignored: a typo in an ablation switch would otherwise train the wrong model.
Values are checked for type and range before anything is built: ``"48"``
for a width would otherwise reach torch as a 3.7 TB allocation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from smgeo_cli.errors import InputFileError, UsageError


def _models_dir() -> Path:
    """models/ beside the package in a source checkout; from a wheel, its copy under ``<prefix>/share/smgeo``."""
    checkout = Path(__file__).resolve().parents[2] / "models"
    installed = Path(sys.prefix) / "share" / "smgeo" / "models"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


MODELS_DIR = _models_dir()


@dataclass
class SMGeoConfig:
    """Everything needed to build an SMGeo network and its training losses.

    Sizes are in pixels of the model's own inputs: the query is resized to
    ``query_size`` square, the reference tile is ``ref_size`` square at
    ``ref_gsd_m`` metres per pixel.
    """

    name: str = "smgeo-t"
    # Inputs.
    query_size: int = 256
    ref_size: int = 1024
    ref_gsd_m: float = 0.5
    # Swin backbone (model/swin.py); the paper's Swin-T.
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 8
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    # Grid-level mixture of experts: stage index -> block indexes (0-based).
    moe_blocks: dict[int, tuple[int, ...]] = field(
        default_factory=lambda: {1: (0, 1), 2: (0, 2, 4), 3: (0, 1)}
    )
    num_experts: int = 6
    top_k: int = 2
    router_noise_std: float = 0.1
    # Fusion and head.
    fusion_dim: int = 128
    fusion_stages: tuple[int, ...] = (1, 2, 3)
    fusion_stride: int = 16
    head_dim: int = 128
    max_detections: int = 10
    # Ablation switches.
    use_moe: bool = True
    shared_backbone: bool = True
    use_fusion: bool = True
    # Loss weights.
    heatmap_weight: float = 1.0
    offset_weight: float = 1.0
    box_l1_weight: float = 5.0
    giou_weight: float = 2.0
    moe_balance_weight: float = 0.01
    moe_entropy_weight: float = 0.001
    # Dense correspondence between the views' features, where a pair's homography is known.
    correspondence_weight: float = 1.0
    correspondence_temperature: float = 0.1

    def __post_init__(self) -> None:
        self._check_types()
        self.depths = tuple(self.depths)
        self.num_heads = tuple(self.num_heads)
        self.fusion_stages = tuple(self.fusion_stages)
        self.moe_blocks = {int(s): tuple(b) for s, b in self.moe_blocks.items()}
        self.validate()

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def stage_stride(self, stage: int) -> int:
        """Pixels of input per token of ``stage`` (Swin halves resolution each stage)."""
        return self.patch_size * 2**stage

    def _check_types(self) -> None:
        """UsageError naming every field whose value has the wrong type (JSON gives strings, nulls, lists)."""
        wrong = [
            f"{f.name}={getattr(self, f.name)!r} (expected {_TYPE_NAMES[f.type]})"
            for f in dataclasses.fields(self)
            if not _TYPE_CHECKS[f.type](getattr(self, f.name))
        ]
        if wrong:
            raise UsageError(f"invalid model config {self.name!r}: " + "; ".join(wrong))

    def validate(self) -> None:
        """Raise UsageError naming the inconsistent or out-of-range fields."""
        problems = [
            f"{name}={getattr(self, name)} must be {rule_text}"
            for name, (rule, rule_text) in _RANGES.items()
            if not (math.isfinite(getattr(self, name)) and rule(getattr(self, name)))
        ]
        for name in ("depths", "num_heads"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                problems.append(f"{name} {list(getattr(self, name))} must be one or more numbers of at least 1")
        if problems:
            raise UsageError(f"invalid model config {self.name!r}: " + "; ".join(problems))
        if len(self.num_heads) != self.num_stages:
            problems.append(f"num_heads has {len(self.num_heads)} entries for {self.num_stages} stages")
        for stage, blocks in self.moe_blocks.items():
            if not 0 <= stage < self.num_stages:
                problems.append(f"moe_blocks names stage {stage}, the backbone has {self.num_stages}")
            elif any(not 0 <= b < self.depths[stage] for b in blocks):
                problems.append(f"moe_blocks {list(blocks)} out of range for stage {stage} of depth {self.depths[stage]}")
        if not 1 <= self.top_k <= self.num_experts:
            problems.append(f"top_k={self.top_k} must be between 1 and num_experts={self.num_experts}")
        if any(not 0 <= s < self.num_stages for s in self.fusion_stages):
            problems.append(f"fusion_stages {list(self.fusion_stages)} out of range")
        for stage, heads in enumerate(self.num_heads):
            width = self.embed_dim * 2**stage
            if width % heads:
                problems.append(f"stage {stage} is {width} wide, which {heads} heads do not divide")
        coarsest = self.stage_stride(self.num_stages - 1)
        for size_name in ("query_size", "ref_size"):
            size = getattr(self, size_name)
            if size % coarsest:
                problems.append(f"{size_name}={size} must be a multiple of the coarsest stride {coarsest}")
        if self.ref_size % self.fusion_stride:
            problems.append(f"ref_size={self.ref_size} must be a multiple of fusion_stride={self.fusion_stride}")
        if problems:
            raise UsageError(f"invalid model config {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["moe_blocks"] = {str(s): list(b) for s, b in self.moe_blocks.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SMGeoConfig":
        if not isinstance(data, dict):
            raise UsageError(f"a model config is a JSON object of fields, got a {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "SMGeoConfig":
        """A copy with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "SMGeoConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputFileError(f"{path}: no such config file") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"{path}: not a readable JSON config ({exc})") from None
        return cls.from_dict(data)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ints(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)


def _is_stage(key: object) -> bool:
    # JSON object keys are strings: "1" names stage 1.
    return _is_int(key) or (isinstance(key, str) and key.isdigit())


# Field annotation (a string, under `from __future__ import annotations`) -> its check and its name in errors.
_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": _is_int,
    "float": lambda v: (isinstance(v, (int, float))) and not isinstance(v, bool),
    "tuple[int, ...]": _is_ints,
    "dict[int, tuple[int, ...]]": lambda v: isinstance(v, dict) and all(_is_stage(k) and _is_ints(b) for k, b in v.items()),
}
_TYPE_NAMES = {
    "str": "text",
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "tuple[int, ...]": "a list of whole numbers",
    "dict[int, tuple[int, ...]]": 'stage numbers to lists of block numbers, e.g. {"1": [0, 1]}',
}
_POSITIVE = (lambda v: v >= 1, "at least 1")
_RANGES = {
    **{
        name: _POSITIVE
        for name in ("query_size", "ref_size", "patch_size", "embed_dim", "window_size", "num_experts", "fusion_dim",
                     "fusion_stride", "head_dim", "max_detections")
    },
    "ref_gsd_m": (lambda v: v > 0, "above 0"),
    "mlp_ratio": (lambda v: v > 0, "above 0"),
    "drop_path_rate": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "router_noise_std": (lambda v: v >= 0, "at least 0"),
    "correspondence_temperature": (lambda v: v > 0, "above 0"),
    **{
        name: (lambda v: v >= 0, "at least 0")
        for name in ("heatmap_weight", "offset_weight", "box_l1_weight", "giou_weight", "moe_balance_weight",
                     "moe_entropy_weight", "correspondence_weight")
    },
}


def resolve_config(name_or_path: str) -> SMGeoConfig:
    """A config by model name (``models/<name>/config.json``), folder or JSON path."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        candidate = candidate / "config.json"
    if candidate.suffix == ".json" and candidate.exists():
        return SMGeoConfig.load(candidate)
    bundled = MODELS_DIR / name_or_path / "config.json"
    if bundled.exists():
        return SMGeoConfig.load(bundled)
    names = sorted(p.parent.name for p in MODELS_DIR.glob("*/config.json"))
    raise UsageError(f"no model config {name_or_path!r}: give a config.json path or one of {', '.join(names)}")
