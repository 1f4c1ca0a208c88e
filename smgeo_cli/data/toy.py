"""Generated query/reference pairs with known answers, for tests, overfit checks and demos.

A scene is a textured reference tile holding two objects of distinct shapes
and saturated colours, and a drone-like query showing both: the ground around
them seen through a random homography (mild perspective, any rotation, a
scale change), blurred and colour-shifted. Each scene gives two pairs with the
same two images: the click on object A with A's box as the target, and the
click on B with B's box, so a model that ignores the click cannot get both.

Coordinates follow the pixel-edge convention of ``transforms``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike

import cv2
import numpy as np
from PIL import Image

from smgeo_cli.data.cvogl import (
    QUERY_DIR,
    SATELLITE_DIR,
    CVOGLRecord,
    check_split_name,
    make_dataset_folders,
    satellite_name,
    write_records,
)
from smgeo_cli.data.geometry import apply_homography, interior_point, local_scale, tight_box, translation, warp_square
from smgeo_cli.data.transforms import colour_jitter
from smgeo_cli.errors import UsageError

# Saturated colours 60 degrees of hue apart, so any two are told apart at a glance.
COLOURS = {
    "red": (220, 35, 35),
    "yellow": (235, 215, 30),
    "green": (40, 190, 50),
    "cyan": (30, 200, 215),
    "blue": (40, 70, 225),
    "magenta": (210, 45, 205),
}


def _regular_polygon(corners: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2.0 * np.pi * np.arange(corners) / corners
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    points = _regular_polygon(10, phase=-np.pi / 2)
    points[1::2] *= 0.45
    return points


def _cross(half_width: float = 0.28, reach: float = 0.95) -> np.ndarray:
    a, b = half_width, reach
    return np.array(
        [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a),
         (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    )


# Each shape is a list of (polygon, fill) drawn in order, in units of the
# object's radius: every shape fits the unit circle, so objects placed with
# their circles apart never touch.
SHAPES: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_regular_polygon(64), 1)],
    "ring": [(_regular_polygon(64), 1), (_regular_polygon(64, radius=0.55), 0)],
    "square": [(_regular_polygon(4, phase=np.pi / 4), 1)],
    "triangle": [(_regular_polygon(3, phase=-np.pi / 2), 1)],
    "cross": [(_cross(), 1)],
    "star": [(_star(), 1)],
}

# Made-up georeferencing for the tile names: ground sample distance and UTM zone.
_GSD_M = 0.5
_EPSG = 32633


@dataclass(frozen=True)
class ToyObject:
    """One drawn object: its look, its box in the reference and a click on it in the query.

    box_xyxy is the tight box of ref_mask (reference pixels); click_xy is the
    object's most interior point mapped into the query (query pixels).
    ref_mask is (R, R) bool, query_mask is (Q, Q) bool.
    """

    shape: str
    colour: str
    box_xyxy: tuple[float, float, float, float]
    click_xy: tuple[float, float]
    ref_mask: np.ndarray
    query_mask: np.ndarray


@dataclass(frozen=True)
class ToyScene:
    """A reference tile (R, R, 3) uint8, a query (Q, Q, 3) uint8 and the two objects in both."""

    reference: np.ndarray
    query: np.ndarray
    objects: tuple[ToyObject, ToyObject]


def _place_objects(rng: np.random.Generator, ref_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (2, 2) and radii (2,) of two objects inside the tile, clear of each other."""
    radii = rng.uniform(ref_size / 16, ref_size / 10, size=2)
    low, high = radii + 1.0, ref_size - radii - 1.0
    while True:
        first = rng.uniform(low[0], high[0], size=2)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        distance = 1.15 * radii.sum() + rng.uniform(0.0, 0.15 * ref_size)
        second = first + distance * np.array([np.cos(angle), np.sin(angle)])
        if np.all(second >= low[1]) and np.all(second <= high[1]):
            return np.stack([first, second]), radii


def _drone_view(
    rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray, query_size: int
) -> np.ndarray:
    """Homography from tile pixels to query pixels that shows both objects whole.

    Rotation by any angle, foreshortening of one axis and a mild perspective
    term, then the scale and shift that put both objects' bounding squares
    inside the query with a margin, spanning 50-80% of it.
    """
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    corners = np.concatenate([centre + radius * square for centre, radius in zip(centres, radii)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    extent = float((high - low).max())
    angle = rng.uniform(0.0, 2.0 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    tilt = np.diag([1.0, rng.uniform(0.7, 1.0), 1.0])
    perspective = np.eye(3)
    perspective[2, :2] = rng.uniform(-0.25, 0.25, size=2) / extent
    view = perspective @ tilt @ rotate @ translation(*(-(low + high) / 2))

    projected = apply_homography(view, corners)
    low, high = projected.min(axis=0), projected.max(axis=0)
    margin = 0.04 * query_size
    scale = (query_size - 2 * margin) * rng.uniform(0.5, 0.8) / float((high - low).max())
    shift = rng.uniform(margin - scale * low, query_size - margin - scale * high)
    return np.diag([scale, scale, 1.0]) @ translation(*(shift / scale)) @ view


def _smooth_noise(
    rng: np.random.Generator, height: int, width: int, cells_per_pixel: float, channels: int
) -> np.ndarray:
    """Blotchy noise of unit scale, (H, W, channels) float32, features 1 / cells_per_pixel across."""
    grid_shape = (max(2, round(height * cells_per_pixel)), max(2, round(width * cells_per_pixel)), channels)
    grid = rng.standard_normal(grid_shape).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)


def _background(rng: np.random.Generator, height: int, width: int, ref_size: int) -> np.ndarray:
    """A muted, textured ground (H, W, 3) float32: blotches, field stripes, roads, grain.

    Low saturation throughout, so the saturated objects are the only vivid things.
    """
    base = rng.uniform(85.0, 155.0) + rng.uniform(-15.0, 15.0, size=3)
    image = np.broadcast_to(base.astype(np.float32), (height, width, 3)).copy()
    # Large and small blotches: mostly brightness, a little tint.
    for cells_per_tile, amplitude in ((rng.uniform(3, 6), 28.0), (rng.uniform(12, 24), 12.0)):
        luma = _smooth_noise(rng, height, width, cells_per_tile / ref_size, 1)
        tint = _smooth_noise(rng, height, width, cells_per_tile / ref_size, 3)
        image += amplitude * (luma + 0.2 * tint)
    # Field stripes in one direction.
    angle = rng.uniform(0.0, np.pi)
    period = ref_size / rng.uniform(8.0, 24.0)
    phase = (np.arange(width)[None, :] * np.cos(angle) + np.arange(height)[:, None] * np.sin(angle)) / period
    image += (rng.uniform(4.0, 14.0) * np.sin(2.0 * np.pi * phase)).astype(np.float32)[..., None]
    # A few straight grey roads.
    for _ in range(int(rng.integers(1, 4))):
        start = rng.uniform(0, [width, height])
        direction = rng.uniform(0.0, 2.0 * np.pi)
        end = start + 4 * max(width, height) * np.array([np.cos(direction), np.sin(direction)])
        start = start - (end - start)
        grey = float(rng.uniform(60.0, 200.0))
        thickness = max(1, round(ref_size * rng.uniform(0.006, 0.02)))
        cv2.line(image, tuple(int(v) for v in start), tuple(int(v) for v in end), (grey,) * 3, thickness)
    return image


def _draw_object(mask: np.ndarray, shape: str, centre: np.ndarray, radius: float, angle: float) -> None:
    """Rasterise a shape into a uint8 mask: pixels whose centres fall inside it become 1."""
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for polygon, fill in SHAPES[shape]:
        points = centre + radius * polygon @ rotate.T
        # OpenCV puts pixel centres on integers; 4 fractional bits keep sub-pixel precision.
        fixed = np.round((points - 0.5) * 16).astype(np.int32)
        cv2.fillPoly(mask, [fixed], fill, lineType=cv2.LINE_8, shift=4)


def render_scene(rng: np.random.Generator, query_size: int = 256, ref_size: int = 1024) -> ToyScene:
    """Draw one scene: a reference tile with two objects and a drone query showing both.

    Objects are 1/8 to 1/5 of the tile across, anywhere in it. The ground is
    drawn over the union of the tile and the query's footprint, so the query
    sees real surroundings past the tile's edge rather than a mirror image.
    """
    shapes = rng.choice(list(SHAPES), size=2, replace=False)
    colours = rng.choice(list(COLOURS), size=2, replace=False)
    angles = rng.uniform(0.0, 2.0 * np.pi, size=2)
    centres, radii = _place_objects(rng, ref_size)
    tile_to_query = _drone_view(rng, centres, radii, query_size)

    query_corners = query_size * np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    footprint = apply_homography(np.linalg.inv(tile_to_query), query_corners)
    left, top = np.floor(np.minimum(footprint.min(axis=0), 0.0)).astype(int) - 1
    right, bottom = np.ceil(np.maximum(footprint.max(axis=0), ref_size)).astype(int) + 1
    width, height = right - left, bottom - top
    world = _background(rng, height, width, ref_size)
    # World pixel (0, 0) is tile pixel (left, top).
    world_to_query = tile_to_query @ translation(left, top)
    tile = (slice(-top, -top + ref_size), slice(-left, -left + ref_size))

    objects = []
    for shape, colour, centre, radius, angle in zip(shapes, colours, centres, radii, angles):
        mask = np.zeros((height, width), dtype=np.uint8)
        _draw_object(mask, shape, centre - (left, top), radius, angle)
        world[mask.astype(bool)] = COLOURS[colour]
        ref_mask = mask[tile].astype(bool)
        click = apply_homography(tile_to_query, interior_point(ref_mask)[None])[0]
        query_mask = warp_square(mask, world_to_query, query_size, cv2.INTER_NEAREST).astype(bool)
        click_xy = (float(click[0]), float(click[1]))
        objects.append(ToyObject(str(shape), str(colour), tight_box(ref_mask), click_xy, ref_mask, query_mask))
    world += rng.normal(0.0, rng.uniform(3.0, 7.0), size=(height, width, 1)).astype(np.float32)
    world = np.clip(world, 0, 255).round().astype(np.uint8)

    # Shrink the ground first when the view shrinks it, so the warp does not alias.
    shrink = min(1.0, 1.5 * local_scale(tile_to_query, centres.mean(axis=0)))
    small_w, small_h = max(1, round(width * shrink)), max(1, round(height * shrink))
    small = cv2.resize(world, (small_w, small_h), interpolation=cv2.INTER_AREA)
    to_small = np.diag([small_w / width, small_h / height, 1.0])
    query = warp_square(small, world_to_query @ np.linalg.inv(to_small), query_size, cv2.INTER_LINEAR)
    query = cv2.GaussianBlur(query, (0, 0), rng.uniform(0.4, 1.2))
    query = colour_jitter(query, rng, brightness=0.15, contrast=0.15, saturation=0.15, hue_deg=8.0)
    return ToyScene(np.ascontiguousarray(world[tile]), query, (objects[0], objects[1]))


def write_toy_dataset(
    root: str | PathLike[str],
    n_scenes: int,
    splits: Sequence[str] = ("train", "val", "test"),
    *,
    query_size: int = 256,
    ref_size: int = 1024,
    seed: int = 0,
    name: str = "Toy",
) -> dict[str, int]:
    """Write generated pairs in the CVOGL layout under root; return the pair count per split.

    Every split gets n_scenes scenes of its own (2 * n_scenes pairs: the click
    on each object); the category is the clicked object's shape. A scene
    depends only on (seed, split name, scene number).
    """
    if not splits:
        raise UsageError("give at least one split name, e.g. train,val,test")
    splits = [check_split_name(split) for split in splits]
    root = make_dataset_folders(root)
    extent_m = ref_size * _GSD_M
    counts = {}
    for split_number, split in enumerate(splits):
        records = []
        for scene_number in range(n_scenes):
            scene = render_scene(
                np.random.default_rng((seed, zlib.crc32(split.encode()), scene_number)), query_size, ref_size
            )
            # Made-up tiles side by side on a grid, one row per split.
            easting = 400_000 + 2 * extent_m * scene_number
            northing = 5_000_000 + 2 * extent_m * split_number
            sat_name = satellite_name(easting, northing, extent_m, _EPSG)
            query_name = f"{name}_{split}_{scene_number:05d}.jpg"
            Image.fromarray(scene.reference).save(root / SATELLITE_DIR / sat_name, quality=95)
            Image.fromarray(scene.query).save(root / QUERY_DIR / query_name, quality=95)
            for obj in scene.objects:
                records.append(
                    CVOGLRecord(len(records), query_name, sat_name, obj.click_xy, obj.box_xyxy, obj.shape)
                )
        write_records(root, name, split, records)
        counts[split] = len(records)
    return counts
