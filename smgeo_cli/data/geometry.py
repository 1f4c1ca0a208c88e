"""Homographies, masks and warps shared by the pair generators.

Coordinates follow the pixel-edge convention of ``transforms``: points are
(x, y), pixel (col, row) covers [col, col + 1) x [row, row + 1). Homographies
are 3x3 float64 arrays mapping such points from one image to another.
"""

from __future__ import annotations

import cv2
import numpy as np


def translation(dx: float, dy: float) -> np.ndarray:
    """The 3x3 homography that shifts points by (dx, dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 homography."""
    mapped = np.c_[points, np.ones(len(points))] @ homography.T
    return mapped[:, :2] / mapped[:, 2:]


def local_scale(homography: np.ndarray, point: np.ndarray) -> float:
    """How much a homography enlarges lengths near a point (square root of the area ratio)."""
    origin, right, down = apply_homography(homography, point + np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    (ax, ay), (bx, by) = right - origin, down - origin
    return float(np.sqrt(abs(ax * by - ay * bx)))


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of the smallest box holding every True pixel of a non-empty (H, W) mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def interior_point(mask: np.ndarray) -> np.ndarray:
    """The mask pixel farthest from its outline, as (x, y) of its centre.

    The centre of a shape can be outside it (a ring's hole); this point never is.
    """
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([col + 0.5, row + 0.5])


def warp_square(image: np.ndarray, homography: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Warp an image into a size x size one with a homography between pixel-edge coordinates.

    OpenCV's coordinates sit on pixel centres, hence the half-pixel shifts;
    the ground past the source's edges is mirrored in.
    """
    to_cv = translation(-0.5, -0.5) @ homography @ translation(0.5, 0.5)
    return cv2.warpPerspective(image, to_cv, (size, size), flags=interpolation, borderMode=cv2.BORDER_REFLECT)
