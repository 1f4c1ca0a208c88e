"""SIFT keypoints and RootSIFT descriptors, computed once per image and reused.

Images are numpy arrays: (H, W, 3) uint8 RGB or (H, W) uint8 grey. Keypoints
are (x, y) in pixels of the image as given, with the pixel-edge convention
used across smgeo: pixel (c, r) covers [c, c + 1) x [r, r + 1), so its centre
is (c + 0.5, r + 0.5). Describing at a reduced working size is invisible to
callers: keypoints are scaled back to the input's pixels.

A drone photo taken off nadir sees the ground compressed along one
direction; past about 60 degrees (a compression of 2) SIFT's descriptors of
the photo and of the orthophoto no longer agree. As ASIFT does (Morel and Yu
2009), a query can also be described in simulated views, the working copy
rotated and squeezed by a tilt ``t`` (the compression of a view
``arccos(1/t)`` off nadir), so that one of them is close to the orthophoto's
geometry; their keypoints are mapped back to the photo, so the homography is
still fitted in photo pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# CLAHE evens out exposure and seasonal contrast before detection, so that
# the same edges give the same gradients in a drone photo and an orthophoto.
CLAHE_CLIP = 2.0
CLAHE_GRID = 8
# Keypoints within this many working pixels of no-data are dropped: the edge
# of the padding is a strong, meaningless gradient.
VALID_MARGIN_PX = 8
# Tilts simulated for a query photo (45 and 60 degrees off nadir); with
# SIFT's own tolerance they reach views a compression of 2.5 or more off.
# A third tilt (2 sqrt 2) found no more held-out objects and let chance fits
# on other ground through. Only the query is simulated: it is described once
# per search, the reference tiles once each.
QUERY_TILTS = (math.sqrt(2.0), 2.0)
KIND = "sift"
_EPS = 1e-7


@dataclass(frozen=True)
class Features:
    """Keypoints and descriptors of one image.

    Attributes:
        keypoints: (N, 2) float64 (x, y) in input-image pixels (pixel edges).
        descriptors: (N, 128) float32 RootSIFT descriptors, unit L2 norm.
        image_size: (width, height) of the input image in pixels.
        work_scale: (x, y) working pixels per input pixel ((1, 1) when not shrunk).
        kind: which detector made them, and so how they are matched: "sift"
            (RootSIFT, ratio test) or "xfeat" (``learned``: LighterGlue).
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]
    work_scale: tuple[float, float]
    kind: str = KIND

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def work_size(self) -> tuple[int, int]:
        """(width, height) of the working copy the features were computed on."""
        return round(self.image_size[0] * self.work_scale[0]), round(self.image_size[1] * self.work_scale[1])


def check_image(image: np.ndarray, name: str) -> None:
    """Raise ValueError unless ``image`` is (H, W) or (H, W, 3) uint8 with pixels."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"{name} must be an (H, W, 3) RGB or (H, W) grey uint8 array, got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {image.shape}")


def working_size(image_size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(width, height) shrunk so that the longer side is at most ``max_side`` (never enlarged)."""
    width, height = image_size
    longest = max(width, height)
    if max_side is None or longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_to(image: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """``image`` resized to ``size`` (width, height); the same array when it already has that size."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=interpolation)


def _equalised_grey(image: np.ndarray) -> np.ndarray:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_GRID, CLAHE_GRID))
    return clahe.apply(np.ascontiguousarray(grey))


def _away_from_no_data(mask: np.ndarray) -> np.ndarray:
    """A uint8 detection mask shrunk ``VALID_MARGIN_PX`` from its zeros; the array's own edge is not no-data."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * VALID_MARGIN_PX + 1, 2 * VALID_MARGIN_PX + 1))
    return cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=255)


def detection_mask(valid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 mask at working ``size`` (width, height): 255 where keypoints may be kept, away from no-data."""
    return _away_from_no_data(resize_to(valid.astype(np.uint8) * 255, size, cv2.INTER_NEAREST))


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, then square root.

    Euclidean distance between RootSIFT vectors is the Hellinger distance
    between the SIFT histograms, which matches better than L2 on raw SIFT.
    """
    descriptors = descriptors.astype(np.float32)
    descriptors /= descriptors.sum(axis=1, keepdims=True) + _EPS
    return np.sqrt(descriptors)


def _detect(grey: np.ndarray, mask: np.ndarray | None, nfeatures: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) SIFT keypoints in OpenCV's pixel-centre coordinates and their (N, 128) RootSIFT descriptors."""
    keypoints, descriptors = cv2.SIFT_create(nfeatures=nfeatures).detectAndCompute(grey, mask)
    if descriptors is None or not keypoints:
        return np.empty((0, 2)), np.empty((0, 128), np.float32)
    return np.array([kp.pt for kp in keypoints], dtype=np.float64), root_sift(descriptors)


def rotated(image: np.ndarray, angle_deg: float, interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned clockwise by ``angle_deg`` on a canvas that just holds it, zeros around it.

    Returns the canvas and the (3, 3) affine from image to canvas pixels
    (OpenCV pixel centres). With y pointing down, the rotation matrix
    ``[[cos, -sin], [sin, cos]]`` turns the picture clockwise.
    """
    height, width = image.shape[:2]
    angle = math.radians(angle_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]]) @ rotation.T
    low, high = corners.min(axis=0), corners.max(axis=0)
    # Quarter turns keep the side lengths exactly, float noise aside.
    canvas = tuple(int(math.ceil(side - 1e-9)) for side in high - low)
    to_canvas = np.vstack([np.c_[rotation, -low], [0.0, 0.0, 1.0]])
    return cv2.warpAffine(image, to_canvas[:2], canvas, flags=interpolation), to_canvas


def _tilted_view(
    grey: np.ndarray, mask: np.ndarray | None, tilt: float, angle_deg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image rotated by ``angle_deg`` and squeezed ``tilt`` times along x, as seen ``arccos(1/tilt)`` off nadir.

    Returns the (h, w) view, its (h, w) uint8 detection mask (``mask``, or
    the whole image, carried into the view and kept off the canvas border)
    and the (3, 3) affine from image to view pixels (OpenCV pixel centres).
    """
    turned, to_canvas = rotated(grey, angle_deg)
    # cv2.resize scales pixel edges, so in pixel centres x -> (x + 0.5) / tilt - 0.5.
    squeeze = np.array([[1.0 / tilt, 0.0, 0.5 / tilt - 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    to_view = squeeze @ to_canvas
    # Blur across the squeeze first, as a camera's optics would (ASIFT's anti-aliasing).
    turned = cv2.GaussianBlur(turned, (0, 0), sigmaX=0.8 * math.sqrt(tilt * tilt - 1.0), sigmaY=0.01)
    size = (max(1, round(turned.shape[1] / tilt)), turned.shape[0])
    view = cv2.resize(turned, size, interpolation=cv2.INTER_LINEAR)
    on_image = np.full_like(grey, 255) if mask is None else mask
    view_mask = cv2.warpAffine(on_image, to_view[:2], size, flags=cv2.INTER_NEAREST)
    return view, _away_from_no_data(view_mask), to_view


def describe(
    image: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    max_side: int | None = None,
    nfeatures: int = 4000,
    tilts: Sequence[float] = (),
) -> Features:
    """SIFT keypoints and RootSIFT descriptors of ``image``.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey.
        valid: optional (H, W) bool, False on no-data (e.g. tile padding past
            the raster); no keypoint is kept within ``VALID_MARGIN_PX``
            working pixels of it.
        max_side: longest side, in pixels, of the working copy the features
            are computed on (None: full size). Shrinking a large photo to
            about the scale of the reference tile saves time and keeps SIFT's
            scale search where the matches are.
        nfeatures: most keypoints kept (the strongest) from the image itself;
            the simulated views share as many again.
        tilts: tilts (> 1) of simulated oblique views to describe as well,
            each at rotations 72 / tilt degrees apart (ASIFT's sampling);
            ``QUERY_TILTS`` for a drone photo, none for a reference tile.

    Cache the result per reference tile: matching many queries against one
    area then describes each tile once.
    """
    check_image(image, "image")
    height, width = image.shape[:2]
    if valid is not None and valid.shape != (height, width):
        raise ValueError(f"valid mask shape {valid.shape} does not match image shape {(height, width)}")
    size = working_size((width, height), max_side)
    scale = (size[0] / width, size[1] / height)
    grey = _equalised_grey(resize_to(image, size))
    mask = None if valid is None else detection_mask(valid, size)
    views = [(tilt, angle) for tilt in tilts for angle in np.arange(0.0, 180.0, 72.0 / tilt)]
    points, descriptors = _detect(grey, mask, nfeatures)
    all_points, all_descriptors = [points], [descriptors]
    for tilt, angle in views:
        view, view_mask, to_view = _tilted_view(grey, mask, tilt, angle)
        view_points, view_descriptors = _detect(view, view_mask, max(1, nfeatures // len(views)))
        back = np.c_[view_points, np.ones(len(view_points))] @ np.linalg.inv(to_view).T
        all_points.append(back[:, :2])
        all_descriptors.append(view_descriptors)
    # OpenCV puts pixel centres at integers; smgeo puts them at +0.5.
    keypoints = (np.concatenate(all_points) + 0.5) / scale
    descriptors = np.concatenate(all_descriptors).astype(np.float32)
    return Features(keypoints=keypoints, descriptors=descriptors, image_size=(width, height), work_scale=scale)
