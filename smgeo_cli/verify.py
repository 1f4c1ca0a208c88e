"""Geometric check of a hit: does the matcher agree with where the model put the object?

For each hit, the raster around it is read at the matcher's tile size and
the photo is matched against that window. The hit is confirmed when a
trustworthy homography maps the click inside the hit's box grown by half
its size on each side (a box a little off still counts). The distance between
the mapped click and the box centre says by how much the two disagree.
Batch runs use the flag to send doubtful results for review.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from smgeo_cli.geo.exif import PhotoHints
from smgeo_cli.geo.output import Detection
from smgeo_cli.geo.raster import ReferenceRaster, read_window
from smgeo_cli.matching import MatchDetector
from smgeo_cli.matching.detector import first_match
from smgeo_cli.matching.detector import matchers as default_matchers

# The window matched around a hit spans this many times the hit's longer side...
CONTEXT = 6.0
# ...and at least this many metres: a homography needs ground around the object.
MIN_SIDE_M = 150.0


VERIFY_KEYS = ("verified", "verify_inliers", "verify_distance_m")


@dataclass(frozen=True)
class Verification:
    """The matcher's view of one hit.

    ``inliers`` is 0 and ``distance_m`` None when the matcher found no
    trustworthy homography; ``distance_m`` is the ground distance between the
    click mapped by the matcher and the hit's box centre.
    """

    confirmed: bool
    inliers: int
    distance_m: float | None

    def properties(self) -> dict[str, object]:
        """Feature properties: ``verified``, ``verify_inliers``, ``verify_distance_m``."""
        distance = None if self.distance_m is None else round(self.distance_m, 2)
        return dict(zip(VERIFY_KEYS, (self.confirmed, self.inliers, distance)))


def verify_hits(
    raster: ReferenceRaster,
    detections: list[Detection],
    photo_rgb: np.ndarray,
    click_xy: tuple[float, float],
    matchers: Sequence[MatchDetector] | None = None,
    hints: PhotoHints = PhotoHints(),
) -> list[Verification]:
    """One :class:`Verification` per detection (boxes in full-raster pixels).

    ``matchers`` are tried in turn around each hit (default: those of the
    default ``--features``) until one finds a homography; each describes the
    photo once. ``hints`` carry the photo's heading and ground resolution.
    """
    return [_verify(raster, detection, photo_rgb, click_xy, matchers or default_matchers(), hints) for detection in detections]


def _verify(
    raster: ReferenceRaster,
    detection: Detection,
    photo_rgb: np.ndarray,
    click_xy: tuple[float, float],
    matchers: Sequence[MatchDetector],
    hints: PhotoHints,
) -> Verification:
    x1, y1, x2, y2 = detection.box_px
    metres_per_px = math.sqrt(raster.gsd_m[0] * raster.gsd_m[1])
    side = max(CONTEXT * max(x2 - x1, y2 - y1), MIN_SIDE_M / metres_per_px)
    size = matchers[0].tile_size
    window = Window((x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side, side)
    rgb, valid = read_window(raster, window, (size, size))
    scale = side / size  # raster pixels per window pixel
    zoom = hints.zoom(scale * metres_per_px)
    match = first_match(matchers, photo_rgb, click_xy, rgb, valid, heading_deg=hints.heading_deg, zoom=zoom)
    if match is None:
        return Verification(confirmed=False, inliers=0, distance_m=None)
    click_x = window.col_off + match.click_xy[0] * scale
    click_y = window.row_off + match.click_xy[1] * scale
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    distance_m = math.hypot((click_x - centre_x) * raster.gsd_m[0], (click_y - centre_y) * raster.gsd_m[1])
    # The box grown by half its size on each side: a hit a little off still counts.
    inside = abs(click_x - centre_x) <= (x2 - x1) and abs(click_y - centre_y) <= (y2 - y1)
    return Verification(confirmed=inside, inliers=match.inliers, distance_m=distance_m)
