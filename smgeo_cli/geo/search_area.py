"""Where to search a raster: all of it, a bounding box, or a circle around a ground point.

Each function returns a window of full-raster pixels clipped to the raster,
ready for ``tiling.plan_tiles``, and raises GeoreferenceError when the area
misses the raster rather than returning an empty search.
"""

from __future__ import annotations

import math

import numpy as np
import pyproj
from rasterio.windows import Window

from ..errors import GeoreferenceError, UsageError
from .coords import GEOD, CRSLike, densify_box, lonlat_bounds, world_to_pixel
from .raster import ReferenceRaster

# Vertices of the polygon drawn around a search circle.
CIRCLE_VERTICES = 72


def _describe_bounds(raster: ReferenceRaster) -> str:
    west, south, east, north = lonlat_bounds(raster.crs, raster.transform, raster.width, raster.height)
    return f"its bounds in EPSG:4326 are {west:.6f},{south:.6f},{east:.6f},{north:.6f}"


def _clip(raster: ReferenceRaster, cols: np.ndarray, rows: np.ndarray) -> Window | None:
    """The pixel bounding box of points (col, row), clipped to the raster; None when it misses."""
    if not (np.isfinite(cols).all() and np.isfinite(rows).all()):
        return None
    col0, col1 = max(0.0, float(cols.min())), min(float(raster.width), float(cols.max()))
    row0, row1 = max(0.0, float(rows.min())), min(float(raster.height), float(rows.max()))
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def full_window(raster: ReferenceRaster) -> Window:
    """The whole raster."""
    return Window(0.0, 0.0, float(raster.width), float(raster.height))


def bbox_window(
    raster: ReferenceRaster, bbox: tuple[float, float, float, float], bbox_crs: CRSLike | None = None
) -> Window:
    """The part of the raster inside ``bbox`` (minx, miny, maxx, maxy) given in ``bbox_crs``.

    ``bbox_crs`` defaults to the raster's CRS. The box's sides are densified
    before reprojecting, so the window holds all of the box's curved image.
    """
    minx, miny, maxx, maxy = bbox
    if not (minx < maxx and miny < maxy):
        raise UsageError(f"bbox must be minx,miny,maxx,maxy with min < max, got {minx},{miny},{maxx},{maxy}")
    try:
        cols, rows = world_to_pixel(raster.crs, raster.transform, *densify_box(bbox), src_crs=bbox_crs or raster.crs)
    except pyproj.exceptions.CRSError as err:
        raise UsageError(f"unknown bbox CRS {bbox_crs!r}: give e.g. EPSG:4326 ({err})") from err
    window = _clip(raster, cols, rows)
    if window is None:
        raise GeoreferenceError(
            f"bbox {minx},{miny},{maxx},{maxy} does not overlap raster {raster.path} ({_describe_bounds(raster)}); "
            "give a --bbox inside those bounds (in --bbox-crs)"
        )
    return window


def circle_window(raster: ReferenceRaster, lon: float, lat: float, radius_m: float) -> Window:
    """The part of the raster within ``radius_m`` metres of the ground point (lon, lat) in degrees.

    The point itself must lie on the raster: a GPS prior that misses the
    raster is an error, not an empty scan.
    """
    if not radius_m > 0:
        raise UsageError(f"search radius must be a positive number of metres, got {radius_m}")
    col, row = world_to_pixel(raster.crs, raster.transform, [lon], [lat])
    window = None
    if 0.0 <= col[0] <= raster.width and 0.0 <= row[0] <= raster.height:
        # A polygon whose sides touch the circle holds all of it.
        azimuths = np.linspace(0.0, 360.0, CIRCLE_VERTICES, endpoint=False)
        reach = np.full(CIRCLE_VERTICES, radius_m / math.cos(math.pi / CIRCLE_VERTICES))
        lons, lats, _ = GEOD.fwd(np.full(CIRCLE_VERTICES, lon), np.full(CIRCLE_VERTICES, lat), azimuths, reach)
        window = _clip(raster, *world_to_pixel(raster.crs, raster.transform, lons, lats))
    if window is None:
        raise GeoreferenceError(
            f"GPS position {lon:.7f},{lat:.7f} is outside raster {raster.path} ({_describe_bounds(raster)}); "
            "give a raster of the photo's ground, or --no-gps to search all of this one"
        )
    return window
