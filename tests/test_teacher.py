"""The XFeat teacher on real imagery (training runs that learn from it are in test_training.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch

from smgeo_cli.data.transforms import image_to_tensor
from smgeo_cli.train.teacher import MATCH_MIN_SIMILARITY, mutual_matches, teacher_descriptors

RASTER = Path(__file__).parent / "data" / "geo" / "test_tiled.tif"
STRIDE = 16


def _real_crop(x: int, y: int, size: int) -> torch.Tensor:
    """(1, 3, size, size) ImageNet-normalised crop of the real test raster at pixel (x, y)."""
    with rasterio.open(RASTER) as raster:
        pixels = raster.read(window=((y, y + size), (x, x + size)))
    rgb = np.repeat(pixels, 3, axis=0) if pixels.shape[0] == 1 else pixels[:3]
    return image_to_tensor(np.ascontiguousarray(rgb.transpose(1, 2, 0)))[None]


def test_teacher_matches_point_to_the_same_ground_in_a_shifted_view():
    # The query is a 128 px crop two cells (32 px) right and one cell down inside the 256 px reference:
    # its cell (r, c) sees the reference's cell (r + 1, c + 2).
    reference = _real_crop(0, 0, 256)
    query = _real_crop(2 * STRIDE, STRIDE, 128)
    labels, valid, _, _ = mutual_matches(
        teacher_descriptors(query, STRIDE), teacher_descriptors(reference, STRIDE), MATCH_MIN_SIMILARITY
    )
    rows, cols = np.divmod(np.arange(64), 8)
    truth = torch.as_tensor((rows + 1) * 16 + cols + 2)
    assert valid.sum() >= 32, "most cells of an unchanged view should be matched"
    # Cells at the view's edges are described from padding, so some miss (75 % right when measured).
    assert (labels[0][valid[0]] == truth[valid[0]]).float().mean() >= 0.6
