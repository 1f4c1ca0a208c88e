"""Opening reference rasters, choosing RGB bands, stretching, and windowed reads with padding and masks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from raster_factory import write_geotiff
from smgeo_cli.errors import GeoreferenceError, InputFileError, UsageError
from smgeo_cli.geo.coords import box_footprint
from smgeo_cli.geo.raster import open_reference, read_valid, read_window

# A real 1000 x 1000 aerial photo, tiled 256 x 256, 0.25 m pixels in EPSG:28992 (Dutch national grid).
REAL_TILED = Path(__file__).parent / "data" / "geo" / "test_tiled.tif"
RGBA = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]


def _bytes(shape=(3, 40, 60), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=shape, dtype=np.uint8)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputFileError, match=r"nope\.tif does not exist"):
        open_reference(tmp_path / "nope.tif")
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(InputFileError, match=r"cannot read reference raster .*notes\.tif"):
        open_reference(text)


@pytest.mark.parametrize("crs, transform", [(None, from_origin(0, 0, 1, 1)), ("EPSG:32633", None)])
def test_raster_without_georeferencing(tmp_path, crs, transform):
    path = write_geotiff(tmp_path / "plain.tif", _bytes(), crs=crs, transform=transform)
    with pytest.raises(GeoreferenceError, match=r"plain\.tif is not georeferenced: it needs a CRS and a geotransform"):
        open_reference(path)


@pytest.mark.parametrize(
    "count, colorinterp, expected",
    [
        (4, RGBA, (1, 2, 3)),
        (3, [ColorInterp.blue, ColorInterp.green, ColorInterp.red], (3, 2, 1)),
        (4, [ColorInterp.alpha, ColorInterp.gray, ColorInterp.undefined, ColorInterp.undefined], (2, 3, 4)),
        (2, [ColorInterp.gray, ColorInterp.alpha], (1, 1, 1)),
        (1, [ColorInterp.gray], (1, 1, 1)),
    ],
)
def test_default_bands_follow_colour_interpretation(tmp_path, count, colorinterp, expected):
    path = write_geotiff(tmp_path / "bands.tif", _bytes((count, 8, 8)), colorinterp=colorinterp)
    with open_reference(path) as raster:
        assert raster.bands == expected


def test_chosen_bands(tmp_path):
    data = _bytes((4, 8, 8))
    path = write_geotiff(tmp_path / "four.tif", data)
    with open_reference(path, bands=[4, 1, 2]) as raster:
        rgb, _ = read_window(raster, Window(0, 0, 8, 8), (8, 8))
        assert np.array_equal(rgb, np.moveaxis(data[[3, 0, 1]], 0, -1))
    with open_reference(path, bands=[2]) as raster:
        rgb, _ = read_window(raster, Window(0, 0, 8, 8), (8, 8))
        assert np.array_equal(rgb, np.repeat(data[1][:, :, None], 3, axis=2))
    with pytest.raises(UsageError, match=r"do not exist in .*four\.tif: it has bands 1 to 4"):
        open_reference(path, bands=[1, 2, 5])
    with pytest.raises(UsageError, match="1 or 3 band numbers"):
        open_reference(path, bands=[1, 2])


def test_uint8_passes_through_unchanged(tmp_path):
    data = _bytes()
    with open_reference(write_geotiff(tmp_path / "rgb.tif", data)) as raster:
        rgb, valid = read_window(raster, Window(10, 5, 30, 20), (20, 30))
    assert valid.all()
    assert np.array_equal(rgb, np.moveaxis(data[:, 5:25, 10:40], 0, -1))


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_stretch_maps_the_2nd_to_98th_percentile_onto_bytes(tmp_path, dtype):
    data = np.random.default_rng(1).uniform(500, 4000, size=(3, 64, 64)).astype(dtype)
    with open_reference(write_geotiff(tmp_path / "deep.tif", data)) as raster:
        low, high = np.percentile(data.reshape(3, -1).astype(np.float64), [2, 98], axis=1)
        np.testing.assert_allclose(raster.stretch.low, low, rtol=1e-6)
        np.testing.assert_allclose(raster.stretch.high, high, rtol=1e-6)
        rgb, valid = read_window(raster, Window(0, 0, 64, 64), (64, 64))
    assert valid.all()
    expected = np.clip(np.rint((data[0] - low[0]) * 255 / (high[0] - low[0])), 0, 255)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert rgb[..., 0][data[0] <= low[0]].max() == 0 and rgb[..., 0][data[0] >= high[0]].min() == 255


def test_nan_and_nodata_read_as_invalid_zeros(tmp_path):
    data = np.full((3, 20, 20), 1000.0, dtype=np.float32)
    data[:, 2:4, 2:4] = np.nan
    data[:, 10:12, 10:12] = -9999.0
    data[:, 15, 15] = 3000.0
    with open_reference(write_geotiff(tmp_path / "holes.tif", data, nodata=-9999.0)) as raster:
        # The stretch ignores nodata: otherwise -9999 would set its low end.
        assert raster.stretch.low[0] == 1000.0
        rgb, valid = read_window(raster, Window(0, 0, 20, 20), (20, 20))
    assert not valid[2:4, 2:4].any() and not valid[10:12, 10:12].any()
    assert valid.sum() == 400 - 8
    assert not rgb[~valid].any()


def test_alpha_band_masks_pixels(tmp_path):
    data = _bytes((4, 16, 16))
    data[3] = 255
    data[3, :, 8:] = 0
    with open_reference(write_geotiff(tmp_path / "rgba.tif", data, colorinterp=RGBA)) as raster:
        rgb, valid = read_window(raster, Window(0, 0, 16, 16), (16, 16))
    assert valid[:, :8].all() and not valid[:, 8:].any()
    assert np.array_equal(rgb[:, :8], np.moveaxis(data[:3, :, :8], 0, -1))
    assert not rgb[:, 8:].any()  # the colours under alpha 0 are hidden


def test_window_past_the_edges_is_padded(tmp_path):
    data = _bytes((3, 40, 60))
    with open_reference(write_geotiff(tmp_path / "rgb.tif", data)) as raster:
        rgb, valid = read_window(raster, Window(-10, 30, 40, 20), (20, 40))
        mask_only = read_valid(raster, Window(-10, 30, 40, 20), (20, 40))
        off_raster, _ = read_window(raster, Window(100, 100, 10, 10), (10, 10))
    on_raster = np.zeros((20, 40), dtype=bool)
    on_raster[:10, 10:] = True
    assert np.array_equal(valid, on_raster) and np.array_equal(mask_only, on_raster)
    assert np.array_equal(rgb[:10, 10:], np.moveaxis(data[:, 30:40, 0:30], 0, -1))
    assert not rgb[~on_raster].any()
    assert not off_raster.any()


def test_shrinking_read_averages_and_keeps_alignment(tmp_path):
    data = np.zeros((3, 40, 60), dtype=np.uint8)
    data[:, 10:20, 30:50] = 200
    data[:, 10, 30] = 0  # one dark pixel of a 2x2 block
    with open_reference(write_geotiff(tmp_path / "rgb.tif", data)) as raster:
        rgb, _ = read_window(raster, Window(0, 0, 60, 40), (20, 30))
    expected = np.zeros((20, 30), dtype=np.uint8)
    expected[5:10, 15:25] = 200
    expected[5, 15] = 150
    assert np.array_equal(rgb[..., 1], expected)


def test_gsd_in_metres_and_fingerprint(tmp_path):
    # One degree at 45 N spans 78,847 m east-west and 111,132 m north-south (WGS84).
    transform = from_origin(15.0, 45.0002, 1e-5, 1e-5)
    path = write_geotiff(tmp_path / "lonlat.tif", _bytes((3, 40, 60)), crs="EPSG:4326", transform=transform)
    with open_reference(path) as raster:
        assert raster.gsd_m == pytest.approx((0.78847, 1.11132), rel=1e-3)
        fingerprint = raster.fingerprint
    with open_reference(path) as raster:
        assert raster.fingerprint == fingerprint
    with open_reference(path, bands=[3, 2, 1]) as raster:
        assert raster.fingerprint != fingerprint
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # the file was rewritten
    with open_reference(path) as raster:
        assert raster.fingerprint != fingerprint


def test_real_tiled_raster_in_a_national_grid():
    with open_reference(REAL_TILED) as raster:
        assert raster.bands == (1, 2, 3)
        assert raster.gsd_m == pytest.approx((0.25, 0.25), rel=1e-3)
        # 250 m x 250 m on the ground, through the grid's datum shift and projection.
        footprint = box_footprint(raster.crs, raster.transform, (0, 0, 1000, 1000))
        assert footprint.area_m2 == pytest.approx(62_500, rel=1e-3)
        rgb, valid = read_window(raster, Window(500, 250, 400, 400), (100, 100))
    with rasterio.open(REAL_TILED) as dataset:
        block_means = dataset.read(window=Window(500, 250, 400, 400)).reshape(3, 100, 4, 100, 4).mean(axis=(2, 4))
    assert valid.all()
    assert np.abs(rgb.astype(float) - np.moveaxis(block_means, 0, -1)).max() <= 1.0
