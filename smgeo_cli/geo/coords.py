"""Conversions between raster pixels and world coordinates.

Pixel coordinates are (col, row) = (x, y) measured from the outer top-left
corner of the raster, so integers fall on pixel edges and pixel (i, j) has its
centre at (j + 0.5, i + 0.5). A box is (x1, y1, x2, y2) in these coordinates,
x1 < x2 and y1 < y2, its sides on the pixel edges it spans. A pixel position
goes to the raster's CRS through the affine transform (``transform @ (col,
row)``, rotation and shear included) and from there anywhere through pyproj
with ``always_xy=True``: geographic positions are always (lon, lat) in degrees.
A footprint's lon/lat ring is continuous (it may run past 180 degrees where it
crosses the antimeridian); :func:`antimeridian_parts` cuts it into parts
with longitudes in [-180, 180] for formats that need that (RFC 7946).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np
import pyproj
from rasterio.crs import CRS
from rasterio.transform import Affine

CRSLike = Union[CRS, str]
LONLAT = "EPSG:4326"
GEOD = pyproj.Geod(ellps="WGS84")


@lru_cache(maxsize=32)
def transformer(src_crs: CRSLike, dst_crs: CRSLike) -> pyproj.Transformer:
    """A cached pyproj transformer from ``src_crs`` to ``dst_crs``, (x, y) / (lon, lat) order."""
    return pyproj.Transformer.from_crs(
        pyproj.CRS.from_user_input(src_crs), pyproj.CRS.from_user_input(dst_crs), always_xy=True
    )


def pixel_to_xy(transform: Affine, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (col, row) to (x, y) in the raster's CRS."""
    xs, ys = transform @ (np.asarray(cols, dtype=np.float64), np.asarray(rows, dtype=np.float64))
    return np.asarray(xs), np.asarray(ys)


def xy_to_pixel(transform: Affine, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) in the raster's CRS to fractional pixel positions (col, row)."""
    return pixel_to_xy(~transform, xs, ys)


def world_to_pixel(
    crs: CRSLike, transform: Affine, xs: np.ndarray, ys: np.ndarray, src_crs: CRSLike = LONLAT
) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y) in ``src_crs`` (lon, lat by default) to raster pixel positions (col, row).

    Points that ``src_crs`` cannot express in the raster's CRS come back as inf.
    """
    rx, ry = transformer(src_crs, crs).transform(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
    return xy_to_pixel(transform, rx, ry)


def pixel_to_lonlat(
    crs: CRSLike, transform: Affine, cols: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (col, row) to (lon, lat) in degrees (EPSG:4326)."""
    xs, ys = pixel_to_xy(transform, cols, rows)
    lons, lats = transformer(crs, LONLAT).transform(xs, ys)
    return np.asarray(lons), np.asarray(lats)


def densify_box(box: tuple[float, float, float, float], points_per_side: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Points along the four sides of an axis-aligned box (x1, y1, x2, y2), corners included.

    Reprojecting these instead of the corners alone keeps the curved image of
    a straight side inside the result's bounds.
    """
    x1, y1, x2, y2 = box
    t = np.linspace(0.0, 1.0, points_per_side)
    xs = np.concatenate([x1 + (x2 - x1) * t, np.full_like(t, x2), x2 - (x2 - x1) * t, np.full_like(t, x1)])
    ys = np.concatenate([np.full_like(t, y1), y1 + (y2 - y1) * t, np.full_like(t, y2), y2 - (y2 - y1) * t])
    return xs, ys


def lonlat_bounds(crs: CRSLike, transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of a raster's footprint, its edges densified."""
    lons, lats = pixel_to_lonlat(crs, transform, *densify_box((0.0, 0.0, float(width), float(height))))
    return float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max())


def ground_resolution(crs: CRSLike, transform: Affine, col: float, row: float) -> tuple[float, float]:
    """Ground size in metres of one pixel step along columns and along rows at (col, row).

    Measured geodesically on the WGS84 ellipsoid, so it is the true ground
    distance whatever the CRS: degrees for geographic rasters, and free of the
    scale error of Mercator-like projections.
    """
    lons, lats = pixel_to_lonlat(crs, transform, [col, col + 1.0, col], [row, row, row + 1.0])
    _, _, step_x = GEOD.inv(lons[0], lats[0], lons[1], lats[1])
    _, _, step_y = GEOD.inv(lons[0], lats[0], lons[2], lats[2])
    return float(step_x), float(step_y)


@dataclass(frozen=True)
class Footprint:
    """Where a pixel box lies on the ground.

    ``ring_xy`` (raster CRS) and ``ring_lonlat`` (EPSG:4326 degrees) are closed
    (5, 2) rings through the same four corners in the same order, which is
    counter-clockwise in lon/lat (RFC 7946). The centre is the box's centre
    taken through the transform; the area is geodesic, in square metres.
    """

    ring_xy: np.ndarray
    ring_lonlat: np.ndarray
    center_lon: float
    center_lat: float
    area_m2: float


def box_footprint(crs: CRSLike, transform: Affine, box: tuple[float, float, float, float]) -> Footprint:
    """The ground footprint of a box (x1, y1, x2, y2) in full-raster pixel edge coordinates."""
    x1, y1, x2, y2 = (float(v) for v in box)
    xs, ys = pixel_to_xy(transform, [x1, x2, x2, x1, (x1 + x2) / 2], [y1, y1, y2, y2, (y1 + y2) / 2])
    lons, lats = transformer(crs, LONLAT).transform(xs, ys)
    # Continuous around the ring and centred near it: a box across the antimeridian
    # would otherwise jump from 179.9 to -179.9 (or, on a raster running past 180, read 180.2).
    lons = np.unwrap(lons, period=360.0)
    lons -= 360.0 * np.floor((lons[4] + 180.0) / 360.0)
    signed_area, _ = GEOD.polygon_area_perimeter(lons[:4], lats[:4])
    # Top-left, top-right, ... runs clockwise on the ground for a north-up
    # raster, but a flipped or rotated transform can reverse that.
    order = [0, 1, 2, 3, 0] if signed_area > 0 else [0, 3, 2, 1, 0]
    return Footprint(
        ring_xy=np.column_stack([xs, ys])[order],
        ring_lonlat=np.column_stack([lons, lats])[order],
        center_lon=float(lons[4]),
        center_lat=float(lats[4]),
        area_m2=abs(float(signed_area)),
    )


def _clip_at(ring: np.ndarray, meridian: float, keep_west: bool) -> np.ndarray:
    """The part of a closed (N, 2) lon/lat ring west (or east) of ``meridian``, closed; lat interpolated along edges."""
    kept: list[np.ndarray] = []
    for a, b in zip(ring[:-1], ring[1:]):
        a_in, b_in = (a[0] <= meridian, b[0] <= meridian) if keep_west else (a[0] >= meridian, b[0] >= meridian)
        if a_in:
            kept.append(a)
        if a_in != b_in and a[0] != meridian and b[0] != meridian:
            t = (meridian - a[0]) / (b[0] - a[0])
            kept.append(np.array([meridian, a[1] + t * (b[1] - a[1])]))
    return np.array([*kept, kept[0]])


def antimeridian_parts(ring: np.ndarray) -> list[np.ndarray]:
    """A continuous closed lon/lat ring as rings with longitudes in [-180, 180]: itself, or cut in two at 180 degrees.

    RFC 7946 (section 3.1.9) asks for geometries crossing the antimeridian to
    be cut there; each part keeps the ring's orientation.
    """
    ring = np.asarray(ring, dtype=np.float64)
    lons = ring[:, 0] - 360.0 * np.floor((ring[:, 0].min() + 180.0) / 360.0)
    ring = np.column_stack([lons, ring[:, 1]])
    if lons.max() <= 180.0:
        return [ring]
    west = _clip_at(ring, 180.0, keep_west=True)
    east = _clip_at(ring, 180.0, keep_west=False)
    east[:, 0] -= 360.0
    return [west, east]
