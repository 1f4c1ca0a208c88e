"""Detections as GIS features: GeoJSON (RFC 7946) text or files, GeoPackage and FlatGeobuf.

GeoJSON is lon/lat (EPSG:4326) with counter-clockwise rings, no ``crs``
member and coordinates rounded to 7 decimals (about 1 cm). GeoPackage and
FlatGeobuf keep the raster's native CRS and need the optional ``pyogrio``.
Files are written to a temporary name beside the target and renamed into
place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeoreferenceError, UsageError
from ..io import replace_atomically, write_text_atomic
from .coords import antimeridian_parts, box_footprint
from .formats import GEOJSON_SUFFIXES, MULTI_LAYER_SUFFIXES, OGR_DRIVERS
from .raster import ReferenceRaster

COORD_DECIMALS = 7


@dataclass(frozen=True)
class Detection:
    """One hit: ``box_px`` (x1, y1, x2, y2) in full-raster pixel edges, its score and 1-based rank."""

    box_px: tuple[float, float, float, float]
    score: float
    rank: int


@dataclass(frozen=True)
class Feature:
    """A detection ready to write: closed (5, 2) rings in lon/lat and in ``crs_wkt``, and its properties."""

    ring_lonlat: np.ndarray
    ring_xy: np.ndarray
    crs_wkt: str
    properties: dict[str, Any]


def make_feature(
    raster: ReferenceRaster,
    detection: Detection,
    *,
    query: str,
    click: tuple[float, float],
    model: str,
    extra: Mapping[str, Any] | None = None,
) -> Feature:
    """The feature for ``detection`` on ``raster``, found for the click (x, y) on the photo ``query``.

    ``extra`` properties follow the standard ones and may not replace them.
    """
    footprint = box_footprint(raster.crs, raster.transform, detection.box_px)
    if not (np.isfinite(footprint.ring_lonlat).all() and np.isfinite(footprint.area_m2)):
        raise GeoreferenceError(
            f"reference raster {raster.path}: the hit {detection.box_px} has no longitude and latitude in its CRS "
            f"({raster.crs}); check its georeferencing"
        )
    properties = {
        "score": float(detection.score),
        "rank": int(detection.rank),
        "query": str(query),
        "click_x": float(click[0]),
        "click_y": float(click[1]),
        "bbox_px": [round(float(v), 3) for v in detection.box_px],
        "ref": str(raster.path),
        "ref_crs": raster.crs.to_string(),
        "center_lon": round(footprint.center_lon, COORD_DECIMALS),
        "center_lat": round(footprint.center_lat, COORD_DECIMALS),
        "area_m2": round(footprint.area_m2, 3),
        "model": str(model),
    }
    clashes = sorted(set(properties) & set(extra or {}))
    if clashes:
        raise ValueError(f"extra properties may not replace standard ones: {clashes}")
    properties.update(extra or {})
    return Feature(
        ring_lonlat=footprint.ring_lonlat,
        ring_xy=footprint.ring_xy,
        crs_wkt=raster.crs.to_wkt(),
        properties=properties,
    )


def feature_collection(features: Sequence[Feature]) -> dict[str, Any]:
    """An RFC 7946 FeatureCollection (a JSON-ready dict) of ``features``."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": _lonlat_geometry(f.ring_lonlat),
                "properties": f.properties,
            }
            for f in features
        ],
    }


def _lonlat_geometry(ring: np.ndarray) -> dict[str, Any]:
    """A Polygon, or a MultiPolygon of its two halves when the ring crosses the antimeridian (RFC 7946)."""
    parts = [[np.round(part, COORD_DECIMALS).tolist()] for part in antimeridian_parts(ring)]
    if len(parts) == 1:
        return {"type": "Polygon", "coordinates": parts[0]}
    return {"type": "MultiPolygon", "coordinates": parts}


def geojson_text(features: Sequence[Feature]) -> str:
    """The GeoJSON text of ``features``, for stdout or a file."""
    return json.dumps(feature_collection(features), allow_nan=False) + "\n"


def _polygon_wkb(ring: np.ndarray) -> bytes:
    """Little-endian WKB of a one-ring polygon; ``ring`` is a closed (N, 2) array."""
    return struct.pack("<BIII", 1, 3, 1, len(ring)) + np.ascontiguousarray(ring, dtype="<f8").tobytes()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _column(values: list[Any]) -> np.ndarray:
    """One property as an OGR field: bool, integer, real, or text (lists and dicts as JSON, None as null)."""
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(_is_int(v) for v in values):
        return np.array(values, dtype=np.int64)
    if all(_is_int(v) or isinstance(v, float) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([_text(v) for v in values], dtype=object)


def property_columns(properties: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The features' ``properties`` as typed columns by name, in order of first appearance; a missing value is None.

    What GeoPackage and FlatGeobuf files get, and the QGIS plugin's layers.
    """
    names = dict.fromkeys(name for values in properties for name in values)
    return {name: _column([values.get(name) for values in properties]) for name in names}


def _write_ogr(path: Path, features: Sequence[Feature], driver: str) -> None:
    try:
        from pyogrio.raw import write
    except ImportError as err:
        raise UsageError(
            f"writing {path.suffix} files needs pyogrio: `pip install pyogrio` (or write .geojson)"
        ) from err
    crs = {f.crs_wkt for f in features}
    if len(crs) > 1:
        raise UsageError(f"cannot write {path}: the detections come from rasters in different CRSs; write .geojson")
    columns = property_columns([f.properties for f in features])
    with replace_atomically(path) as tmp:
        if path.suffix.lower() in MULTI_LAYER_SUFFIXES and path.is_file():
            # The layer is written into a copy of the file, so its other layers survive (and a crash leaves all intact).
            shutil.copyfile(path, tmp)
        write(
            str(tmp),
            geometry=np.array([_polygon_wkb(f.ring_xy) for f in features], dtype=object),
            field_data=list(columns.values()),
            fields=list(columns),
            driver=driver,
            geometry_type="Polygon",
            crs=crs.pop() if crs else None,
            layer=path.stem,
        )


def write_features(path: str | Path, features: Sequence[Feature]) -> None:
    """Write ``features`` to ``path``; the suffix picks the format (.geojson/.json, .gpkg, .fgb).

    An existing file is replaced, except a GeoPackage: there the layer named
    after the file (its stem) is added or replaced and every other layer kept. Raises UsageError for an unknown suffix or
    when pyogrio is missing for .gpkg/.fgb, InputFileError when the folder is missing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in GEOJSON_SUFFIXES:
        write_text_atomic(path, geojson_text(features))
    elif suffix in OGR_DRIVERS:
        _write_ogr(path, features, OGR_DRIVERS[suffix])
    else:
        known = ", ".join((*GEOJSON_SUFFIXES, *OGR_DRIVERS))
        raise UsageError(f"cannot write {path}: unknown output format {path.suffix!r} (use {known})")
