"""Pixel boxes to world polygons and back, for north-up, rotated and flipped rasters in several CRSs."""

from __future__ import annotations

import json
import math

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.features import geometry_mask
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window

from raster_factory import UTM_33N, UTM_TRANSFORM, write_geotiff
from smgeo_cli.errors import GeoreferenceError, UsageError
from smgeo_cli.geo.coords import pixel_to_lonlat, world_to_pixel
from smgeo_cli.geo.output import Detection, geojson_text, make_feature
from smgeo_cli.geo.raster import open_reference
from smgeo_cli.geo.search_area import bbox_window, circle_window, full_window

SHAPE = (100, 120)  # rows, cols
OBJECT_BOX = (37, 21, 61, 33)  # x1, y1, x2, y2 in pixel edges

GRIDS = {
    "utm": (UTM_33N, UTM_TRANSFORM),
    "web-mercator": ("EPSG:3857", from_origin(1_669_792.0, 5_621_521.0, 0.5, 0.5)),
    "lonlat": ("EPSG:4326", from_origin(15.0, 45.0, 5e-6, 5e-6)),
    "rotated": (UTM_33N, Affine.translation(500_000.0, 4_983_000.0) @ Affine.rotation(25.0) @ Affine.scale(0.5, -0.5)),
    # South-up rows: the same corner order runs the other way round on the ground.
    "flipped": (UTM_33N, Affine(0.5, 0.0, 500_000.0, 0.0, 0.5, 4_983_000.0)),
}


@pytest.fixture(params=list(GRIDS))
def scene(request, tmp_path):
    """A raster with a bright object on OBJECT_BOX; yields (raster, crs, transform)."""
    crs, transform = GRIDS[request.param]
    data = np.full((3, *SHAPE), 40, dtype=np.uint8)
    x1, y1, x2, y2 = OBJECT_BOX
    data[:, y1:y2, x1:x2] = 250
    with open_reference(write_geotiff(tmp_path / "ref.tif", data, crs=crs, transform=transform)) as raster:
        yield raster, crs, transform


def _true_points(crs: str, transform: Affine, cols, rows) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions in the raster CRS and in lon/lat, from the affine coefficients and a fresh pyproj."""
    cols, rows = np.asarray(cols, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    a, b, c, d, e, f = transform[:6]
    xy = np.column_stack([a * cols + b * rows + c, d * cols + e * rows + f])
    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return xy, np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))


def _true_corners(crs: str, transform: Affine, box) -> tuple[np.ndarray, np.ndarray]:
    x1, y1, x2, y2 = box
    return _true_points(crs, transform, [x1, x2, x2, x1], [y1, y1, y2, y2])


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def _feature(raster):
    return make_feature(raster, Detection(OBJECT_BOX, 0.9, 1), query="q.jpg", click=(10.0, 20.0), model="test")


def test_polygon_corners_are_the_true_world_corners(scene):
    raster, crs, transform = scene
    feature = _feature(raster)
    true_xy, _ = _true_corners(crs, transform, OBJECT_BOX)
    pixel_size = math.hypot(transform.a, transform.d)
    # Back to the raster CRS with an independent transformer: the error in
    # native units, measured against the pixel size.
    to_native = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    lonlat_as_xy = np.column_stack(to_native.transform(*feature.ring_lonlat.T))
    for ring in (feature.ring_xy, lonlat_as_xy):
        assert np.array_equal(ring[0], ring[-1])
        distances = np.linalg.norm(ring[:4, None, :] - true_xy[None, :, :], axis=2)
        assert sorted(distances.argmin(axis=1)) == [0, 1, 2, 3]
        assert distances.min(axis=1).max() < 1e-6 * pixel_size


def test_geojson_ring_is_ccw_rounded_to_7_decimals_without_crs(scene):
    raster, crs, transform = scene
    collection = json.loads(geojson_text([_feature(raster)]))
    assert "crs" not in collection
    (feature,) = collection["features"]
    assert "crs" not in feature
    ring = np.array(feature["geometry"]["coordinates"][0])
    assert ring.shape == (5, 2) and np.array_equal(ring[0], ring[-1])
    assert _signed_area(ring) > 0
    for value in ring.ravel():
        assert value == round(value, 7)
    _, true_lonlat = _true_corners(crs, transform, OBJECT_BOX)
    errors = np.abs(ring[:4, None, :] - true_lonlat[None, :, :]).max(axis=2)
    assert sorted(errors.argmin(axis=1)) == [0, 1, 2, 3]
    assert errors.min(axis=1).max() <= 0.5e-7 + 1e-12


def test_object_read_back_lies_inside_the_polygon(scene):
    raster, crs, transform = scene
    (feature,) = json.loads(geojson_text([_feature(raster)]))["features"]
    lonlat = np.array(feature["geometry"]["coordinates"][0])
    to_native = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    native = np.column_stack(to_native.transform(lonlat[:, 0], lonlat[:, 1]))
    polygon = {"type": "Polygon", "coordinates": [native.tolist()]}
    inside = geometry_mask([polygon], out_shape=SHAPE, transform=transform, invert=True)
    with rasterio.open(raster.path) as dataset:
        bright = dataset.read(1) > 200
    assert inside.sum() == (OBJECT_BOX[2] - OBJECT_BOX[0]) * (OBJECT_BOX[3] - OBJECT_BOX[1])
    assert np.array_equal(inside, bright)


def test_center_and_area_properties(scene):
    raster, crs, transform = scene
    properties = _feature(raster).properties
    x1, y1, x2, y2 = OBJECT_BOX
    _, centre = _true_points(crs, transform, [(x1 + x2) / 2], [(y1 + y2) / 2])
    assert properties["center_lon"] == pytest.approx(centre[0, 0], abs=1e-7)
    assert properties["center_lat"] == pytest.approx(centre[0, 1], abs=1e-7)
    gsd_x, gsd_y = raster.gsd_m
    assert properties["area_m2"] == pytest.approx((x2 - x1) * gsd_x * (y2 - y1) * gsd_y, rel=1e-3)


def test_lonlat_goes_back_to_the_same_pixel(scene):
    raster, crs, transform = scene
    cols, rows = np.array([0.0, 37.25, 120.0]), np.array([0.0, 21.5, 100.0])
    lons, lats = pixel_to_lonlat(crs, transform, cols, rows)
    back_cols, back_rows = world_to_pixel(crs, transform, lons, lats)
    np.testing.assert_allclose(back_cols, cols, atol=1e-6)
    np.testing.assert_allclose(back_rows, rows, atol=1e-6)


@pytest.fixture
def utm_raster(tmp_path):
    with open_reference(write_geotiff(tmp_path / "utm.tif", np.full((3, *SHAPE), 90, np.uint8))) as raster:
        yield raster


def test_bbox_in_raster_crs_is_the_exact_window(utm_raster):
    x0, y0 = UTM_TRANSFORM @ (10, 20)
    x1, y1 = UTM_TRANSFORM @ (40, 50)
    window = bbox_window(utm_raster, (x0, y1, x1, y0))
    assert window.todict() == pytest.approx(Window(10, 20, 30, 30).todict(), abs=1e-6)


def test_bbox_in_lonlat_covers_the_box_and_is_clipped(utm_raster):
    lons, lats = pixel_to_lonlat(utm_raster.crs, utm_raster.transform, [50.0, 200.0], [30.0, 70.0])
    window = bbox_window(utm_raster, (lons.min(), lats.min(), lons.max(), lats.max()), "EPSG:4326")
    # The lon/lat box's image in UTM is slightly rotated (grid convergence), so it reaches a little further.
    assert window.col_off <= 50.0 and window.row_off <= 30.0
    assert window.col_off + window.width == SHAPE[1]
    assert window.row_off + window.height >= 70.0
    assert window.col_off > 49.0 and window.row_off > 29.0


def test_bbox_errors(utm_raster):
    with pytest.raises(GeoreferenceError, match="does not overlap raster"):
        bbox_window(utm_raster, (10.0, 10.0, 10.1, 10.1), "EPSG:4326")
    with pytest.raises(UsageError, match="unknown bbox CRS"):
        bbox_window(utm_raster, (10.0, 10.0, 10.1, 10.1), "EPSG:not-a-code")
    with pytest.raises(UsageError, match="min < max"):
        bbox_window(utm_raster, (10.0, 10.0, 9.0, 10.1))


def test_circle_window_spans_the_radius_in_ground_metres(utm_raster):
    (lon,), (lat,) = pixel_to_lonlat(utm_raster.crs, utm_raster.transform, [60.0], [50.0])
    window = circle_window(utm_raster, lon, lat, 10.0)
    step = 10.0 / utm_raster.gsd_m[0]  # about 20 pixels
    assert window.col_off == pytest.approx(60.0 - step, abs=0.05)
    assert window.width == pytest.approx(2 * step, abs=0.1)
    assert window.row_off == pytest.approx(50.0 - step, abs=0.05)
    assert circle_window(utm_raster, lon, lat, 1e6).todict() == pytest.approx(full_window(utm_raster).todict())


def test_gps_outside_the_raster_is_an_error(utm_raster):
    (lon,), (lat,) = pixel_to_lonlat(utm_raster.crs, utm_raster.transform, [-5.0], [50.0])
    with pytest.raises(GeoreferenceError, match=r"GPS position .* is outside raster .*utm\.tif.*EPSG:4326.*--no-gps"):
        circle_window(utm_raster, lon, lat, 100.0)
    with pytest.raises(UsageError):
        circle_window(utm_raster, 15.0, 45.0, 0.0)
