"""A virtual drone camera over flat ground, and the ways its photos differ from an archive image.

Ground coordinates are tile pixels (x east, y south) on the plane z = 0, with
z pointing down into the ground, so (x, y, z) is right-handed. The camera
follows OpenCV's convention (x right, y down, z forward). Its pitch is the
angle of the optical axis below the horizon: 90 degrees looks straight down,
30 is a shallow oblique view. Query pixels follow the pixel-edge convention
of ``transforms``.
"""

from __future__ import annotations

import cv2
import numpy as np

from smgeo_cli.data.geometry import apply_homography
from smgeo_cli.data.transforms import colour_jitter

PITCH_DEG = (30.0, 90.0)
# Horizontal field of view of the virtual lens (degrees).
FOV_DEG = (50.0, 80.0)
# The view's top corners stay this far below the horizon, so every pixel sees ground.
HORIZON_MARGIN_DEG = 8.0
# Fraction of the query's width the object spans at the view's centre.
OBJECT_SPAN = (0.15, 0.5)


def camera_homography(
    pitch_deg: float, heading_deg: float, fov_deg: float, distance: float, aim: np.ndarray, size: int
) -> np.ndarray:
    """3x3 homography from ground (tile pixels) to the pixels of a size x size photo.

    The camera looks at ground point aim (x, y) from distance (tile pixels)
    along its optical axis; heading turns it clockwise from north (the top of
    the tile), then it tilts up from nadir to the pitch. The photo's top is the
    far side.
    """
    tilt = np.deg2rad(90.0 - pitch_deg)
    heading = np.deg2rad(heading_deg)
    # Camera axes in ground coordinates: rotation about z by the heading, then about x by the tilt.
    rz = np.array([[np.cos(heading), -np.sin(heading), 0.0], [np.sin(heading), np.cos(heading), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)], [0.0, np.sin(tilt), np.cos(tilt)]])
    camera_to_ground = rz @ rx
    centre = np.array([aim[0], aim[1], 0.0]) - distance * camera_to_ground[:, 2]
    rotation = camera_to_ground.T
    focal = 0.5 * size / np.tan(np.deg2rad(fov_deg) / 2.0)
    intrinsics = np.array([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]])
    extrinsics = np.column_stack([rotation[:, 0], rotation[:, 1], -rotation @ centre])
    return intrinsics @ extrinsics


def sample_view(
    rng: np.random.Generator, outline: np.ndarray, size: int, tries: int = 20
) -> tuple[np.ndarray, float]:
    """A random drone view of the object with outline (N, 2) (tile pixels) that shows it whole.

    Pitch is uniform in PITCH_DEG, heading in [0, 360), the object spans
    OBJECT_SPAN of the view near its centre and sits off-centre. Returns the
    ground-to-query homography and the pitch (degrees). After `tries`
    views that cut the object, the last is re-aimed at the object's centre.
    """
    centre = outline.mean(axis=0)
    diameter = max(float(np.ptp(outline, axis=0).max()), 1.0)
    for attempt in range(tries + 1):
        pitch = rng.uniform(*PITCH_DEG)
        # A narrower lens at low pitch keeps the horizon out of the view.
        fov = min(rng.uniform(*FOV_DEG), 2.0 * (pitch - HORIZON_MARGIN_DEG) / np.sqrt(2.0))
        span = rng.uniform(*OBJECT_SPAN)
        focal = 0.5 * size / np.tan(np.deg2rad(fov) / 2.0)
        distance = focal * diameter / (span * size)
        offset = 0.0 if attempt == tries else 0.25 * diameter / span
        aim = centre + rng.uniform(-offset, offset, size=2)
        homography = camera_homography(pitch, rng.uniform(0.0, 360.0), fov, distance, aim, size)
        seen = apply_homography(homography, outline)
        if np.all((seen >= 0.02 * size) & (seen <= 0.98 * size)):
            break
    return homography, pitch


def _shadows(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken a few random soft-edged polygons, as cast shadows of trees and buildings do."""
    size = image.shape[0]
    shade = np.ones(image.shape[:2], dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        centre = rng.uniform(0, size, size=2)
        radius = rng.uniform(0.05, 0.25) * size
        angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=int(rng.integers(4, 8))))
        points = centre + radius * rng.uniform(0.5, 1.0, size=(len(angles), 1)) * np.c_[np.cos(angles), np.sin(angles)]
        cv2.fillPoly(shade, [np.round(points).astype(np.int32)], float(rng.uniform(0.35, 0.7)))
    shade = cv2.GaussianBlur(shade, (0, 0), 0.01 * size + 0.5)
    return np.clip(image * shade[..., None], 0, 255)


def degrade(image: np.ndarray, rng: np.random.Generator, pitch_deg: float = 90.0) -> np.ndarray:
    """Make a rendered view (S, S, 3) uint8 look unlike the archive it came from; geometry untouched.

    Colour and white-balance (season) shift, exposure (gain and gamma), haze
    (thickening towards the far, top side the more oblique the view at pitch_deg), cast-shadow-like dark polygons, lower
    resolution (shrunk and enlarged back), blur, sensor noise and strong JPEG.
    Each is drawn at random and some are skipped; returns a new uint8 image.
    """
    size = image.shape[0]
    out = colour_jitter(image, rng, brightness=0.2, contrast=0.25, saturation=0.4, hue_deg=15.0).astype(np.float32)
    out *= rng.uniform(0.8, 1.2, size=3).astype(np.float32)  # white balance
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(0.65, 1.5)  # exposure curve
    if rng.random() < 0.5:
        rows = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
        haze = rng.uniform(0.1, 0.45) * (1.0 - np.cos(np.deg2rad(pitch_deg)) * rows)
        out = (1.0 - haze) * out + haze * rng.uniform(170.0, 235.0, size=3).astype(np.float32)
    if rng.random() < 0.5:
        out = _shadows(out, rng)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        small = max(8, round(size * rng.uniform(0.3, 0.8)))
        out = cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.5))
    noise = rng.normal(0.0, rng.uniform(1.0, 8.0), size=out.shape).astype(np.float32)
    out = np.clip(out + noise, 0, 255).astype(np.uint8)
    _, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(12, 60))])
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
