"""Weights folders: ``config.json`` + ``model.safetensors`` side by side.

Nothing here unpickles: safetensors holds only tensors, the config is JSON.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model

from smgeo_cli.errors import WeightsError
from smgeo_cli.io import replace_atomically
from smgeo_cli.model.config import MODELS_DIR, SMGeoConfig
from smgeo_cli.model.smgeo import SMGeo

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BUNDLED_WEIGHTS = MODELS_DIR / "smgeo-nano-bundled"
# Folders written while the backbone was timm's carry its final norm, which SMGeo never applied.
UNUSED_LEGACY_KEY = re.compile(r"encoder\.(reference|query)_backbone\.norm\.(weight|bias)")


def weights_folder(weights: Path | None) -> Path:
    """``weights`` as given, else the bundled model's folder; WeightsError when neither exists."""
    if weights is not None:
        return weights
    if BUNDLED_WEIGHTS.is_dir():
        return BUNDLED_WEIGHTS
    raise WeightsError(
        f"no bundled model at {BUNDLED_WEIGHTS}: pass --weights DIR, a folder with config.json and "
        "model.safetensors (e.g. runs/<name>/best from `smgeo train`)"
    )


def save_weights(model: SMGeo, folder: Path, half: bool = False, metadata: dict[str, str] | None = None) -> None:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` atomically.

    ``half`` stores fp16 (half the size, for bundled models); loading casts
    back to the model's dtype. Expert pools shared by several blocks are
    stored once.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = _unwrap(model)
    source = model
    if half:
        source = SMGeo(model.config)
        source.load_state_dict(model.state_dict())
        source.half()
    meta = {"format": "pt", "smgeo_config": json.dumps(model.config.to_dict())}
    meta.update(metadata or {})
    with replace_atomically(folder / WEIGHTS_FILE) as tmp:
        save_model(source, str(tmp), metadata=meta)
    with replace_atomically(folder / CONFIG_FILE) as tmp:
        model.config.save(tmp)


def load_model(folder: Path, device: str | torch.device = "cpu") -> SMGeo:
    """Build the model described by ``folder/config.json`` and load its weights."""
    folder = Path(folder)
    _check_folder(folder)
    model = SMGeo(SMGeoConfig.load(folder / CONFIG_FILE))
    load_weights_into(model, folder)
    return model.float().to(device).eval()


def load_weights_into(model: SMGeo, folder: Path) -> None:
    """Load ``folder``'s weights into an existing model of the same architecture.

    Input sizes may differ from the folder's config (Swin here takes any
    multiple of its coarsest stride), so weights trained on small references
    can start a run at full size.
    """
    folder = Path(folder)
    _check_folder(folder)
    try:
        missing, unexpected = load_safetensors_into(model, str(folder / WEIGHTS_FILE), strict=False)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise WeightsError(f"{folder / WEIGHTS_FILE}: weights do not fit the model ({_first_line(exc)})") from None
    unexpected = [key for key in unexpected if not UNUSED_LEGACY_KEY.fullmatch(key)]
    if missing or unexpected:
        raise WeightsError(
            f"{folder / WEIGHTS_FILE}: weights do not fit the model "
            f"({len(missing)} missing, e.g. {sorted(missing)[:2]}; {len(unexpected)} unexpected, e.g. {sorted(unexpected)[:2]})"
        )


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no such weights folder (expected {CONFIG_FILE} and {WEIGHTS_FILE} in it)")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).exists():
            raise WeightsError(f"{folder}: missing {name}; a weights folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")


def _unwrap(model: torch.nn.Module) -> SMGeo:
    """The SMGeo inside a DistributedDataParallel wrapper, or the model itself."""
    return getattr(model, "module", model)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
