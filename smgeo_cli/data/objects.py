"""Find object-like regions in an aerial tile: compact patches that stand out from their surroundings.

The tile is shrunk to a working size, smoothed by mean-shift filtering (which
flattens texture inside a region but keeps its edges), quantised into CIELAB
colour bins, and split into connected components per bin. A component is
kept when its size in metres lies in the asked range and it is compact (high
solidity, moderate aspect) and differs in colour from a ring of ground around
it: a roof, a pond, a field patch. Masks come back at the tile's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from smgeo_cli.data.geometry import tight_box

# Long side, in pixels, of the image that is segmented: mean shift costs O(pixels).
WORK_SIZE = 256
# Mean-shift spatial and colour radii (working pixels, 8-bit colour units).
_SPATIAL_RADIUS = 6
_COLOUR_RADIUS = 24
# CIELAB bin widths (OpenCV's 8-bit Lab: L, a and b all span 0-255).
_LAB_BINS = np.array([32, 16, 16])
MIN_SOLIDITY = 0.8
MAX_ASPECT = 3.0
# Mean CIELAB distance between a region and its ring below which it does not stand out.
MIN_CONTRAST = 20.0


@dataclass(frozen=True)
class ObjectRegion:
    """A found region: mask (H, W) bool at tile resolution, its tight box (x1, y1, x2, y2) in tile pixels,
    and its contrast (mean CIELAB distance to the surrounding ring)."""

    mask: np.ndarray
    box_xyxy: tuple[float, float, float, float]
    contrast: float


def _ring_contrast(lab: np.ndarray, mask: np.ndarray, width: int) -> float:
    """Distance between the mean colours of a region and of the band `width` pixels wide around it."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    ring = cv2.dilate(mask, kernel).astype(bool) & ~mask.astype(bool)
    if not ring.any():
        return 0.0
    return float(np.linalg.norm(lab[mask.astype(bool)].mean(axis=0) - lab[ring].mean(axis=0)))


def _solidity(mask: np.ndarray) -> float:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
    return float(mask.sum()) / hull_area if hull_area > 0 else 0.0


def find_objects(
    tile: np.ndarray, gsd_m: float, size_m: tuple[float, float] = (20.0, 300.0)
) -> list[ObjectRegion]:
    """Object-like regions of an RGB tile (H, W, 3) uint8 whose pixels are gsd_m metres across.

    A region's longer box side must lie in size_m (metres); regions touching
    the tile's edge are left out, since part of them may lie outside it.
    Returns them in no particular order, possibly none.
    """
    height, width = tile.shape[:2]
    shrink = min(1.0, WORK_SIZE / max(height, width))
    small_size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    small = cv2.resize(tile, small_size, interpolation=cv2.INTER_AREA)
    work_gsd = gsd_m * width / small.shape[1]
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    smooth = cv2.cvtColor(cv2.pyrMeanShiftFiltering(small, _SPATIAL_RADIUS, _COLOUR_RADIUS), cv2.COLOR_RGB2LAB)
    bins = smooth.astype(np.int32) // _LAB_BINS
    labels = (bins[..., 0] * 32 + bins[..., 1]) * 32 + bins[..., 2]
    low_px, high_px = size_m[0] / work_gsd, size_m[1] / work_gsd
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    regions = []
    for value in np.unique(labels):
        same = cv2.morphologyEx((labels == value).astype(np.uint8), cv2.MORPH_CLOSE, close)
        count, components, stats, _ = cv2.connectedComponentsWithStats(same, connectivity=8)
        for index in range(1, count):
            x, y, w, h, area = stats[index]
            long_side, short_side = max(w, h), min(w, h)
            if not low_px <= long_side <= high_px or long_side > MAX_ASPECT * short_side:
                continue
            if x == 0 or y == 0 or x + w == small.shape[1] or y + h == small.shape[0] or area < 0.5 * w * h:
                continue
            mask = (components == index).astype(np.uint8)
            if _solidity(mask) < MIN_SOLIDITY:
                continue
            contrast = _ring_contrast(lab, mask, max(2, round(0.25 * long_side)))
            if contrast < MIN_CONTRAST:
                continue
            full = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
            if full.any():
                regions.append(ObjectRegion(full, tight_box(full), contrast))
    return regions
