"""The object outline: the part of the query photo around the click that stands out as one thing.

The rule, on a working copy of the photo ``WORK_SIDE`` pixels on its longer
side (so that it does not depend on the photo's resolution):

1. Mean-shift filtering flattens texture inside surfaces but keeps the edges
   between them (roof against yard, tree crown against road).
2. Each pixel gets its CIELAB colour distance to the filtered colour at the
   click (a mean-shift mode, so one odd pixel does not decide), lightness
   down-weighted, divided by the CVOGL click map ``(1 - dist/diag)^2``: the
   map is the prior that the object lies around the click, so the farther a
   pixel is, the closer in colour it must be to join.
3. For a geometric ladder of tolerances, the candidate region is the
   connected area of pixels within the tolerance that holds the click (gaps
   under ``BRIDGE_PX`` closed). The candidates are nested and grow with the
   tolerance.
4. A candidate is an object when it is neither a speck (below
   ``MIN_AREA_FRAC`` of the image) nor much of the scene (above
   ``max_area_frac``) and does not reach the image border (a leak into the
   background, or an object the photo cuts off).
5. The object chosen is the most stable one, as in MSER: stability is its
   area over the area of the next, larger candidate, 1 when raising the
   tolerance adds nothing because real edges bound the region. On a tie the
   larger wins: the whole roof rather than one of its faces.

The outline is the object's convex hull, not its box: a homography carries
a hull to the hull of the object on the ground, whose bounds are the object's
box there, while the bounds of a carried box are too large by up to 2x a side
when the photo's heading is diagonal to the reference's axes.

When no candidate qualifies (a flat or busy image, an object cut by the
border), the outline is the disc inscribed in a square ``fallback_frac`` of
the image's shorter side, centred on the click and shifted to lie inside the
image: an object of about that size, in no particular orientation.

Outlines are (N, 2) float arrays and windows (x1, y1, x2, y2) floats, in query
pixels, pixel edges: pixel (c, r) covers [c, c + 1) x [r, r + 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..errors import UsageError
from .features import check_image, resize_to, working_size

WORK_SIDE = 512
# Mean-shift radii in working pixels and in colour units.
MEANSHIFT_SPATIAL = 5
MEANSHIFT_COLOUR = 20
# Weight of CIELAB lightness against the two colour axes: sunlit and shaded
# faces of one roof or crown differ mostly in lightness.
LIGHTNESS_WEIGHT = 0.5
# Gaps up to this wide, in working pixels, do not split a region: ridge
# lines, painted markings and wires cross objects without bounding them.
BRIDGE_PX = 3
# Colour-distance tolerances tried, smallest first.
TOLERANCES = np.geomspace(4.0, 64.0, 13)
# Smallest object as a fraction of the image area (60 working pixels of a 4:3 photo).
MIN_AREA_FRAC = 3e-4
# Vertices of the fallback disc: its bounds are still the fallback square.
DISC_VERTICES = 32
_EPS = 1e-6


def click_map(width: int, height: int, click_xy: Sequence[float]) -> np.ndarray:
    """(height, width) float32 CVOGL click map ``(1 - dist/diag)^2``; click in pixel edges."""
    cols = np.arange(width, dtype=np.float32) + 0.5
    rows = np.arange(height, dtype=np.float32) + 0.5
    dist = np.hypot(cols[None, :] - click_xy[0], rows[:, None] - click_xy[1])
    return np.clip(1.0 - dist / np.hypot(width, height), 0.0, None) ** 2


def fallback_window(
    image_size: tuple[int, int], click_xy: Sequence[float], fallback_frac: float = 0.25
) -> tuple[float, float, float, float]:
    """Square of ``fallback_frac`` x the shorter side, centred on the click, moved to lie inside the image."""
    width, height = image_size
    side = fallback_frac * min(width, height)
    x1 = float(np.clip(click_xy[0] - side / 2, 0.0, width - side))
    y1 = float(np.clip(click_xy[1] - side / 2, 0.0, height - side))
    return x1, y1, x1 + side, y1 + side


def fallback_outline(image_size: tuple[int, int], click_xy: Sequence[float], fallback_frac: float = 0.25) -> np.ndarray:
    """(DISC_VERTICES, 2) polygon of the disc inscribed in ``fallback_window``."""
    x1, y1, x2, y2 = fallback_window(image_size, click_xy, fallback_frac)
    angles = np.linspace(0.0, 2 * np.pi, DISC_VERTICES, endpoint=False)
    radius = (x2 - x1) / 2
    return np.c_[(x1 + x2) / 2 + radius * np.cos(angles), (y1 + y2) / 2 + radius * np.sin(angles)]


def outline_bounds(outline: np.ndarray) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) axis-aligned bounds of an (N, 2) polygon."""
    (x1, y1), (x2, y2) = outline.min(axis=0), outline.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


def check_click(image_size: tuple[int, int], click_xy: Sequence[float]) -> None:
    """Raise UsageError unless the click (x, y) lies inside an image of ``image_size`` (width, height)."""
    width, height = image_size
    x, y = click_xy
    if not (0.0 <= x < width and 0.0 <= y < height):
        raise UsageError(f"click ({x:g}, {y:g}) lies outside the query image ({width} x {height} px)")


def _colour_distance(small: np.ndarray, seed_xy: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 weighted Lab distance of the mean-shift-filtered image to its colour at the seed."""
    rgb = small if small.ndim == 3 else cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    flat = cv2.pyrMeanShiftFiltering(np.ascontiguousarray(rgb), MEANSHIFT_SPATIAL, MEANSHIFT_COLOUR)
    lab = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= LIGHTNESS_WEIGHT
    x, y = seed_xy
    return np.linalg.norm(lab - lab[y, x], axis=2)


def _candidates(distance: np.ndarray, seed_xy: tuple[int, int]) -> list[np.ndarray]:
    """Nested regions holding the seed, one per tolerance, as (H, W) bool (empty when the seed is out)."""
    x, y = seed_xy
    bridge = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (BRIDGE_PX, BRIDGE_PX))
    regions = []
    for tolerance in TOLERANCES:
        within = cv2.morphologyEx((distance < tolerance).astype(np.uint8), cv2.MORPH_CLOSE, bridge)
        _, labels = cv2.connectedComponents(within, connectivity=8)
        regions.append(labels == labels[y, x] if labels[y, x] > 0 else np.zeros_like(labels, bool))
    return regions


def _is_object(region: np.ndarray, max_area_frac: float) -> bool:
    area = region.mean()
    touches_border = region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any()
    return MIN_AREA_FRAC <= area <= max_area_frac and not touches_border


def _most_stable(regions: list[np.ndarray], max_area_frac: float) -> np.ndarray | None:
    best, best_stability = None, 0.0
    for region, larger in zip(regions[:-1], regions[1:]):
        if not _is_object(region, max_area_frac):
            continue
        stability = region.sum() / larger.sum()
        if stability >= best_stability:
            best, best_stability = region, stability
    return best


def _pixel_hull(region: np.ndarray) -> np.ndarray:
    """(N, 2) convex hull of a (H, W) bool region's pixel squares, pixel edges."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    centres = np.concatenate([contour.reshape(-1, 2) for contour in contours]).astype(np.float64)
    pixel_corners = (centres[:, None, :] + np.array([[0, 0], [1, 0], [1, 1], [0, 1]])[None]).reshape(-1, 2)
    return cv2.convexHull(pixel_corners.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def object_outline(
    query: np.ndarray,
    click_xy: Sequence[float],
    *,
    max_area_frac: float = 0.25,
    fallback_frac: float = 0.25,
) -> np.ndarray:
    """Convex outline of the object under the click, or the fallback disc (the rule is in the module's docstring).

    Args:
        query: (H, W, 3) uint8 RGB or (H, W) uint8 grey photo.
        click_xy: (x, y) in query pixels, pixel edges.
        max_area_frac: largest object, as a fraction of the image area.
        fallback_frac: side of the fallback square over the image's shorter side.

    Returns:
        (N, 2) polygon vertices (x, y) in query pixels.
    """
    check_image(query, "query image")
    height, width = query.shape[:2]
    check_click((width, height), click_xy)
    size = working_size((width, height), WORK_SIDE)
    sx, sy = size[0] / width, size[1] / height
    seed = (min(int(click_xy[0] * sx), size[0] - 1), min(int(click_xy[1] * sy), size[1] - 1))
    prior = click_map(size[0], size[1], (click_xy[0] * sx, click_xy[1] * sy))
    distance = _colour_distance(resize_to(query, size), seed) / np.maximum(prior, _EPS)
    region = _most_stable(_candidates(distance, seed), max_area_frac)
    if region is None:
        return fallback_outline((width, height), click_xy, fallback_frac)
    return _pixel_hull(region) / (sx, sy)
