"""SIFT keypoints and RootSIFT descriptors, computed once per image and reused.

Images are numpy arrays: (H, W, 3) uint8 RGB or (H, W) uint8 grey. Keypoints
are (x, y) in pixels of the image as given, with the pixel-edge convention
used across smgeo: pixel (c, r) covers [c, c + 1) x [r, r + 1), so its centre
is (c + 0.5, r + 0.5). Describing at a reduced working size is invisible to
callers: keypoints are scaled back to the input's pixels.
"""

from __future__ import annotations

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
_EPS = 1e-7


@dataclass(frozen=True)
class Features:
    """Keypoints and descriptors of one image.

    Attributes:
        keypoints: (N, 2) float64 (x, y) in input-image pixels (pixel edges).
        descriptors: (N, 128) float32 RootSIFT descriptors, unit L2 norm.
        image_size: (width, height) of the input image in pixels.
        work_scale: (x, y) working pixels per input pixel ((1, 1) when not shrunk).
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]
    work_scale: tuple[float, float]

    def __len__(self) -> int:
        return len(self.keypoints)


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


def _detection_mask(valid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    small = resize_to(valid.astype(np.uint8) * 255, size, cv2.INTER_NEAREST)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * VALID_MARGIN_PX + 1, 2 * VALID_MARGIN_PX + 1))
    return cv2.erode(small, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=255)


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, then square root.

    Euclidean distance between RootSIFT vectors is the Hellinger distance
    between the SIFT histograms, which matches better than L2 on raw SIFT.
    """
    descriptors = descriptors.astype(np.float32)
    descriptors /= descriptors.sum(axis=1, keepdims=True) + _EPS
    return np.sqrt(descriptors)


def describe(
    image: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    max_side: int | None = None,
    nfeatures: int = 4000,
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
        nfeatures: most keypoints kept (the strongest).

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
    mask = None if valid is None else _detection_mask(valid, size)
    keypoints, descriptors = cv2.SIFT_create(nfeatures=nfeatures).detectAndCompute(grey, mask)
    if descriptors is None or not keypoints:
        points, descriptors = np.empty((0, 2)), np.empty((0, 128), np.float32)
    else:
        # OpenCV puts pixel centres at integers; smgeo puts them at +0.5.
        points = (np.array([kp.pt for kp in keypoints], dtype=np.float64) + 0.5) / scale
        descriptors = root_sift(descriptors)
    return Features(keypoints=points, descriptors=descriptors, image_size=(width, height), work_scale=scale)
