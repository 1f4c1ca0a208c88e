"""The drone photo as the learned features see it: turned to a heading and scaled to the tiles' ground resolution.

Learned features are not rotation invariant and, being computed at one
scale, not scale invariant either; SIFT is both. So a photo matched with
XFeat is described in views: the photo resampled towards the tiles' ground
sample distance (``zoom``, tile pixels per photo pixel, from the photo's
altitude and focal length) or, when that is unknown, to a working size,
then turned clockwise by each heading tried: one when the photo has been
turned north-up from its metadata heading, else ``smgeo_cli.defaults.DEFAULT_HEADINGS`` evenly
spaced turns, one of which is within ``180 / headings`` degrees of north-up.

Each view keeps the affine that carries photo pixels into it, so matches
found in a view are fitted in photo pixels: the homography, the click and
the object outline stay in the photo's frame whatever view matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .features import Features, check_image, resize_to, rotated, working_size
from .matcher import project

# Longest side of a view when the photo's ground resolution is unknown.
DEFAULT_MAX_SIDE = 1024
# A view smaller than this holds too few keypoints to fit a homography.
MIN_VIEW_SIDE = 64
_EDGE_TO_CENTRE = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class PhotoView:
    """The photo turned by ``turn_deg`` (clockwise) and scaled: its features and the (3, 3) affine into it.

    ``features`` are in view pixels; ``to_view`` maps photo pixels to view
    pixels, pixel edges both sides.
    """

    turn_deg: float
    features: Features
    to_view: np.ndarray

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) view pixels to photo pixels."""
        return project(np.linalg.inv(self.to_view), points)[0]

    @property
    def scale(self) -> float:
        """Working pixels of the features per photo pixel (the view's zoom times the features' own shrink)."""
        zoom = float(np.sqrt(abs(np.linalg.det(self.to_view[:2, :2]))))
        return zoom * float(np.sqrt(self.features.work_scale[0] * self.features.work_scale[1]))


def headings(count: int) -> tuple[float, ...]:
    """``count`` clockwise turns, evenly spaced from 0 degrees."""
    if count < 1:
        raise ValueError(f"at least one heading is needed, got {count}")
    return tuple(360.0 * k / count for k in range(count))


def view_size(photo_size: tuple[int, int], zoom: float | None) -> tuple[int, int]:
    """(width, height) of the photo resampled by ``zoom``, or shrunk to ``DEFAULT_MAX_SIDE`` when None.

    Never enlarged past the photo's own pixels, nor shrunk below ``MIN_VIEW_SIDE`` on its shorter side.
    """
    width, height = photo_size
    if zoom is None:
        return working_size(photo_size, DEFAULT_MAX_SIDE)
    zoom = min(1.0, max(zoom, MIN_VIEW_SIDE / min(width, height)))
    return max(1, round(width * zoom)), max(1, round(height * zoom))


def turned_view(photo: np.ndarray, turn_deg: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo resampled to ``size`` (width, height) and turned clockwise by ``turn_deg``.

    Returns the (h, w[, 3]) view, its (h, w) bool mask of pixels that show
    the photo (the canvas corners of an oblique turn do not) and the (3, 3)
    affine from photo to view pixels (pixel edges).
    """
    check_image(photo, "photo")
    height, width = photo.shape[:2]
    small = resize_to(photo, size)
    view, to_canvas = rotated(small, turn_deg)
    on_photo, _ = rotated(np.full(small.shape[:2], 255, np.uint8), turn_deg, cv2.INTER_NEAREST)
    shrink = np.diag([size[0] / width, size[1] / height, 1.0])
    to_view = np.linalg.inv(_EDGE_TO_CENTRE) @ to_canvas @ _EDGE_TO_CENTRE @ shrink
    return view, on_photo > 0, to_view


def photo_views(
    photo: np.ndarray, describe, turns: Sequence[float], zoom: float | None = None
) -> tuple[PhotoView, ...]:
    """The photo described by ``describe(view, valid=mask)`` at each of ``turns`` (degrees clockwise).

    ``zoom`` is tile pixels per photo pixel when the photo's ground
    resolution is known (see ``view_size``).
    """
    size = view_size((photo.shape[1], photo.shape[0]), zoom)
    views = []
    for turn in turns:
        view, valid, to_view = turned_view(photo, turn, size)
        views.append(PhotoView(turn, describe(view, valid=valid), to_view))
    return tuple(views)
