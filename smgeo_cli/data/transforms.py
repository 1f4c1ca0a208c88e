"""Image reading, resizing, normalisation and augmentation for query/reference pairs.

Images are numpy arrays, H x W x 3, uint8 RGB. Points and boxes are in pixel
coordinates with the pixel-edge convention: pixel (col, row) covers
[col, col + 1) x [row, row + 1), so the image spans [0, W] x [0, H]. Points
are (x, y); boxes are (x1, y1, x2, y2). Under this convention resizing an image
from W to S pixels scales every x by exactly S / W (and y by S / H).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from smgeo_cli.data.geometry import apply_homography

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ITU-R BT.601 luma weights: the grey level that saturation and contrast pivot on.
_LUMA = np.array([0.299, 0.587, 0.114])
# Share of training references turned grey, so single-band archives are not a surprise.
GREY_REFERENCE_P = 0.15


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised with ImageNet mean and std."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    # (v / 255 - mean) / std as one multiply-add, in numpy on contiguous planes:
    # several times faster than the same arithmetic on a permuted torch view.
    std = np.array(IMAGENET_STD, dtype=np.float32)
    gain = (1.0 / (255.0 * std))[:, None, None]
    offset = (np.array(IMAGENET_MEAN, dtype=np.float32) / std)[:, None, None]
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32)
    return torch.from_numpy(planes * gain - offset)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
    shrinking = width < image.shape[1] and height < image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)


def _scale_xy(coords: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Scale coordinates whose last axis alternates x, y (a point (2,) or a box (4,))."""
    coords = np.asarray(coords, dtype=np.float64)
    return coords * np.tile(np.array([sx, sy]), coords.shape[-1] // 2)


def resize_with_points(
    image: np.ndarray, size: int, coords: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image to size x size and scale coordinates to match.

    coords: array whose last axis alternates x, y, in the input image's pixels
    (a click (2,), a box (4,), or stacks of them). x scales by size / W and y by
    size / H. Returns the resized image and float64 coordinates.
    """
    height, width = image.shape[:2]
    return _resize(image, size, size), _scale_xy(coords, size / width, size / height)


def turn_with_points(
    image: np.ndarray, turn_deg: float, coords: np.ndarray, max_side: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The image turned clockwise by ``turn_deg`` about its centre on a square canvas, and coordinates with it.

    The canvas side is the image's longer side, or ``max_side`` when that is
    smaller: the image is first shrunk to it, aspect kept, so a photo bound for
    a small network input is not warped at full size. What the turned image
    does not cover is filled by mirroring it, as rendered views continue past
    their edges, so the network sees no black corners it never trained on.
    coords alternate x, y in the input's pixels (see :func:`resize_with_points`).
    """
    height, width = image.shape[:2]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        shrunk_w, shrunk_h = max(1, round(width * scale)), max(1, round(height * scale))
        coords = _scale_xy(coords, shrunk_w / width, shrunk_h / height)
        image, width, height = _resize(image, shrunk_w, shrunk_h), shrunk_w, shrunk_h
    side = max(height, width)
    # OpenCV's positive angle turns the picture counter-clockwise on screen (y down).
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), -turn_deg, 1.0)
    matrix[:, 2] += ((side - width) / 2, (side - height) / 2)
    turned = cv2.warpAffine(np.ascontiguousarray(image), matrix, (side, side), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    points = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    return turned, moved.reshape(np.shape(coords))


def colour_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float,
    contrast: float,
    saturation: float,
    hue_deg: float,
) -> np.ndarray:
    """Random photometric change; geometry untouched.

    Brightness, contrast and saturation are multiplied by factors drawn from
    [1 - amount, 1 + amount]; hue is rotated about the grey axis by an angle
    drawn from [-hue_deg, hue_deg]. Returns a new uint8 image.
    """
    b = rng.uniform(1.0 - brightness, 1.0 + brightness)
    c = rng.uniform(1.0 - contrast, 1.0 + contrast)
    s = rng.uniform(1.0 - saturation, 1.0 + saturation)
    theta = np.deg2rad(rng.uniform(-hue_deg, hue_deg))
    # Hue and saturation as one 3x3 colour matrix: a rotation about the grey
    # axis (Rodrigues) after pulling each pixel towards or away from its luma.
    u = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    hue = np.cos(theta) * np.eye(3) + (1.0 - np.cos(theta)) * np.outer(u, u) + np.sin(theta) * cross
    sat = s * np.eye(3) + (1.0 - s) * np.outer(np.ones(3), _LUMA)
    matrix = b * hue @ sat
    # Contrast pivots on the mean grey of the recoloured image, which is the
    # recoloured mean: so the whole change is one affine map per pixel.
    image = np.ascontiguousarray(image)
    grey = float(_LUMA @ matrix @ np.array(cv2.mean(image)[:3]))
    affine = np.hstack([c * matrix, np.full((3, 1), (1.0 - c) * grey)])
    return cv2.transform(image, affine)  # rounds and saturates to uint8


def _map_box(box: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The box (4,) through an axis-aligned 3x3 map (flip, quarter turn, scale, shift): the corners' extent."""
    corners = apply_homography(matrix, np.reshape(box, (2, 2)))
    return np.r_[corners.min(axis=0), corners.max(axis=0)]


def _hflip(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: (x, y) goes to (W - x, y)."""
    width = image.shape[1]
    return image[:, ::-1], np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _vflip(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror top-bottom: (x, y) goes to (x, H - y)."""
    height = image.shape[0]
    return image[::-1], np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height], [0.0, 0.0, 1.0]])


def _rot90(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A counter-clockwise quarter turn: the point (x, y) goes to (y, W - x)."""
    width = image.shape[1]
    return np.rot90(image), np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, width], [0.0, 0.0, 1.0]])


def _crop_keeping_box(
    image: np.ndarray, box: np.ndarray, rng: np.random.Generator, min_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a window holding the whole box, then resize it back to the image's size.

    The window keeps the image's aspect ratio and a side of at least min_scale
    of the image (more if the box needs it); its corner is an integer pixel so
    the box shifts exactly. Returns the image and the 3x3 map of its points.
    """
    height, width = image.shape[:2]
    # The box clipped to the image, widened to whole pixels.
    kx1, ky1 = np.floor(np.clip(box[:2], 0, [width, height])).astype(int)
    kx2, ky2 = np.ceil(np.clip(box[2:], 0, [width, height])).astype(int)
    scale = max(rng.uniform(min_scale, 1.0), (kx2 - kx1) / width, (ky2 - ky1) / height)
    crop_w = min(width, int(np.ceil(scale * width)))
    crop_h = min(height, int(np.ceil(scale * height)))
    left = int(rng.integers(max(0, kx2 - crop_w), min(kx1, width - crop_w) + 1))
    top = int(rng.integers(max(0, ky2 - crop_h), min(ky1, height - crop_h) + 1))
    crop = image[top : top + crop_h, left : left + crop_w]
    sx, sy = width / crop_w, height / crop_h
    return _resize(crop, width, height), np.array([[sx, 0.0, -left * sx], [0.0, sy, -top * sy], [0.0, 0.0, 1.0]])


def augment_reference(
    image: np.ndarray, box: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random geometric and photometric augmentation of a reference tile and its box.

    image: (H, W, 3) uint8. box: (4,) x1, y1, x2, y2 in the image's pixels.
    Horizontal and vertical flips, quarter turns (square images only, so the
    output keeps the input's shape; flips already give the half turn), a crop
    that keeps the whole box resized back to (H, W), colour jitter, and now
    and then grey (panchromatic archives are common). Returns the new image,
    same shape, the box (4,) float64 in its pixels and the (3, 3) map from
    input to output pixels (for labels beyond the box, e.g. correspondences).
    """
    matrix = np.eye(3)
    steps = []
    if rng.random() < 0.5:
        steps.append(_hflip)
    if rng.random() < 0.5:
        steps.append(_vflip)
    if image.shape[0] == image.shape[1]:
        steps += [_rot90] * int(rng.integers(4))
    for step in steps:
        image, step_matrix = step(image)
        matrix = step_matrix @ matrix
    box = _map_box(np.asarray(box, dtype=np.float64), matrix)
    if rng.random() < 0.5:
        image, crop_matrix = _crop_keeping_box(image, box, rng, min_scale=0.6)
        matrix, box = crop_matrix @ matrix, _map_box(box, crop_matrix)
    image = colour_jitter(image, rng, brightness=0.25, contrast=0.25, saturation=0.3, hue_deg=15.0)
    if rng.random() < GREY_REFERENCE_P:
        image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return image, box, matrix


def augment_query_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light colour jitter of a query photo; no geometry, so its click stays valid."""
    return colour_jitter(image, rng, brightness=0.1, contrast=0.1, saturation=0.1, hue_deg=5.0)
