"""Tile plans, skipping empty tiles, one stretch for all tiles, and merging boxes across tile seams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from raster_factory import write_geotiff
from smgeo_cli.errors import UsageError
from smgeo_cli.geo import tiling
from smgeo_cli.geo.raster import open_reference, read_window
from smgeo_cli.geo.search_area import full_window
from smgeo_cli.geo.tiling import Tile, iter_tiles, nms, plan_tiles, tile_box_to_raster

GSD = (0.5, 0.5)


def _coverage(tiles: list[Tile], area: Window) -> np.ndarray:
    """How many tiles cover each whole pixel of ``area``."""
    count = np.zeros((int(area.height), int(area.width)), dtype=int)
    for tile in tiles:
        w = tile.window
        rows = slice(max(0, int(np.floor(w.row_off - area.row_off))), int(np.ceil(w.row_off + w.height - area.row_off)))
        cols = slice(max(0, int(np.floor(w.col_off - area.col_off))), int(np.ceil(w.col_off + w.width - area.col_off)))
        count[rows, cols] += 1
    return count


def test_tiles_cover_the_area_with_at_least_the_overlap():
    area = Window(30, 20, 1000, 700)
    tiles = plan_tiles(area, GSD, model_gsd_m=1.0, tile_size=64, overlap=0.25)
    # 64 model pixels of 1 m are 128 raster pixels of 0.5 m.
    assert {(t.window.width, t.window.height, t.scale) for t in tiles} == {(128.0, 128.0, (2.0, 2.0))}
    assert (_coverage(tiles, area) >= 1).all()
    cols = sorted({t.window.col_off for t in tiles})
    rows = sorted({t.window.row_off for t in tiles})
    assert cols[0] == 30 and cols[-1] + 128 == pytest.approx(1030)
    assert rows[0] == 20 and rows[-1] + 128 == pytest.approx(720)
    strides = np.diff(cols + rows)[np.diff(cols + rows) > 0]
    assert strides.max() <= 0.75 * 128
    assert len(cols) == 11  # the fewest tiles that keep a 25% overlap: 1 + ceil((1000 - 128) / 96)
    assert [(t.row, t.col) for t in tiles[:2]] == [(0, 0), (0, 1)]


def test_overlap_is_exact_when_the_area_fits_the_stride():
    area = Window(0, 0, 128 + 3 * 96, 128)
    tiles = plan_tiles(area, GSD, model_gsd_m=0.5, tile_size=128, overlap=0.25)
    assert [t.window.col_off for t in tiles] == pytest.approx([0, 96, 192, 288])
    assert [t.window.row_off for t in tiles] == [0, 0, 0, 0]


def test_area_smaller_than_a_tile_gets_one_centred_padded_tile(tmp_path):
    data = np.full((3, 50, 100), 77, dtype=np.uint8)
    with open_reference(write_geotiff(tmp_path / "small.tif", data)) as raster:
        (tile,) = plan_tiles(full_window(raster), GSD, model_gsd_m=0.5, tile_size=128)
        ((_, rgb, valid),) = iter_tiles(raster, [tile])
    assert (tile.window.col_off, tile.window.row_off) == (-14, -39)
    on_raster = np.zeros((128, 128), dtype=bool)
    on_raster[39:89, 14:114] = True
    assert np.array_equal(valid, on_raster)
    assert (rgb[on_raster] == 77).all() and not rgb[~on_raster].any()


def test_bad_plans_are_usage_errors():
    with pytest.raises(UsageError, match="overlap"):
        plan_tiles(Window(0, 0, 10, 10), GSD, 0.5, 64, overlap=1.0)
    for gsd in (0.0, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="positive size and GSD"):
            plan_tiles(Window(0, 0, 10, 10), GSD, gsd, 64)


def test_tiles_far_finer_than_the_raster_are_refused_with_the_gsd_that_works():
    # --gsd 1e-6 once upsampled without limit; a 53 m geographic raster at 0.5 m made 7,308 tiles.
    with pytest.raises(UsageError, match=r"53 m .* 106 times finer .* --gsd 3.31 or coarser"):
        plan_tiles(Window(0, 0, 10, 10), (53.0, 53.0), 0.5, 64)
    assert plan_tiles(Window(0, 0, 10, 10), (8.0, 8.0), 0.5, 64)  # 16 times finer is allowed


def test_too_many_tiles_are_refused_with_their_count_before_any_is_made():
    huge = Window(0, 0, 1e9, 1e9)  # 1e14 tiles: a plan that would never finish
    per_axis = math.ceil((1e9 - 128) / 96) + 1
    with pytest.raises(UsageError, match=rf"needs {per_axis**2:,} tiles .* more than --max-tiles 4,000"):
        plan_tiles(huge, GSD, 0.5, 128, max_tiles=4000)
    with pytest.raises(UsageError, match="--max-tiles 10"):
        tiling.plan_grid_tiles(Window(0, 0, 1e9, 1e9), (10**9, 10**9), GSD, 0.5, 128, max_tiles=10)
    assert len(plan_tiles(Window(0, 0, 500, 500), GSD, 0.5, 128, max_tiles=25)) == 25  # exactly the limit passes


def test_the_grid_over_the_whole_raster_is_the_plan_of_the_whole_raster():
    area = Window(0, 0, 1234, 987)
    plan = plan_tiles(area, (0.37, 0.41), 0.5, 128)
    grid = tiling.plan_grid_tiles(area, (1234, 987), (0.37, 0.41), 0.5, 128)
    assert [(t.window, t.row, t.col) for t in grid] == [(t.window, t.row, t.col) for t in plan]
    part = tiling.plan_grid_tiles(Window(400.5, 300.25, 200, 150), (1234, 987), (0.37, 0.41), 0.5, 128)
    touching = [t for t in plan if t.window.col_off < 600.5 and t.window.col_off + t.window.width > 400.5
                and t.window.row_off < 450.25 and t.window.row_off + t.window.height > 300.25]  # fmt: skip
    assert part == touching


def test_twice_the_gsd_halves_the_picture(tmp_path):
    data = np.zeros((3, 256, 256), dtype=np.uint8)
    data[:, 40:80, 100:120] = 255
    with open_reference(write_geotiff(tmp_path / "rgb.tif", data)) as raster:
        gsd = raster.gsd_m
        (tile,) = plan_tiles(full_window(raster), gsd, model_gsd_m=2 * gsd[0], tile_size=128)
        ((_, rgb, _),) = iter_tiles(raster, [tile])
    assert tile.window.width == pytest.approx(256) and tile.scale[0] == pytest.approx(2.0)
    rows, cols = np.nonzero(rgb[..., 0] > 127)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (20, 40, 50, 60)


def _half_empty(path, masking: str):
    """A 256 x 256 raster, grey 120 on its left half, no data on its right half."""
    if masking == "nodata":
        data = np.full((3, 256, 256), 120, dtype=np.uint8)
        data[:, :, 128:] = 0
        return write_geotiff(path, data, nodata=0)
    if masking == "alpha":
        data = np.full((4, 256, 256), 120, dtype=np.uint8)
        data[3] = 255
        data[3, :, 128:] = 0
        rgba = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        return write_geotiff(path, data, colorinterp=rgba)
    # NaN without a declared nodata value: only the pixels themselves tell.
    data = np.full((3, 256, 256), 120.0, dtype=np.float32)
    data[:, :, 128:] = np.nan
    return write_geotiff(path, data)


@pytest.mark.parametrize("masking", ["nodata", "alpha", "nan"])
def test_tiles_without_data_are_skipped(tmp_path, masking, monkeypatch):
    full_reads = []

    def counting_read_window(*args):
        full_reads.append(args[1])
        return read_window(*args)

    monkeypatch.setattr(tiling, "read_window", counting_read_window)
    with open_reference(_half_empty(tmp_path / "half.tif", masking)) as raster:
        tiles = plan_tiles(full_window(raster), GSD, model_gsd_m=0.5, tile_size=64, overlap=0.0)
        kept = list(iter_tiles(raster, tiles))
    assert len(tiles) == 16
    assert sorted((t.row, t.col) for t, _, _ in kept) == [(r, c) for r in range(4) for c in range(2)]
    for _, rgb, valid in kept:
        assert valid.all() and (rgb == rgb[0, 0]).all()
    # Masks rule out empty tiles before their pixels are read, where the file declares them.
    assert len(full_reads) == (16 if masking == "nan" else 8)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_one_stretch_for_all_tiles(tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = np.empty((3, 128, 256), dtype=dtype)
    data[:, :, :128] = rng.uniform(100, 1000, size=(3, 128, 128))  # a dark half
    data[:, :, 128:] = rng.uniform(3000, 9000, size=(3, 128, 128))  # a bright half
    data[:, 60:68, 60:68] = data[:, 60:68, 188:196] = 2000  # one value in both
    with open_reference(write_geotiff(tmp_path / "deep.tif", data)) as raster:
        tiles = plan_tiles(full_window(raster), GSD, model_gsd_m=0.5, tile_size=128, overlap=0.0)
        (_, left, _), (_, right, _) = iter_tiles(raster, tiles)
    patch = left[60:68, 60:68]
    assert np.unique(patch.reshape(-1, 3), axis=0).shape[0] == 1
    assert np.array_equal(patch, right[60:68, 60:68])
    assert 0 < patch.min() and patch.max() < 255


def test_straddling_object_is_found_once(tmp_path):
    """Tiles of 128 raster pixels with a 96-pixel stride; the object sits across the first tile's right edge."""
    data = np.zeros((3, 128, 224), dtype=np.uint8)
    true_box = np.array([118.0, 40.0, 138.0, 60.0])
    data[:, 40:60, 118:138] = 255
    with open_reference(write_geotiff(tmp_path / "seam.tif", data)) as raster:
        tiles = plan_tiles(full_window(raster), GSD, model_gsd_m=1.0, tile_size=64)
        assert [t.window.col_off for t in tiles] == [0, 96]
        boxes = []
        for tile, rgb, _ in iter_tiles(raster, tiles):
            # A stand-in detector: the box around the bright pixels, in tile pixels.
            rows, cols = np.nonzero(rgb[..., 0] > 127)
            tile_box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            boxes.append(tile_box_to_raster(tile, np.array([tile_box]))[0])
    boxes = np.array(boxes)
    # The first tile saw only the part left of its edge, the second all of it.
    assert np.array_equal(boxes, [[118, 40, 128, 60], true_box])
    scores = np.array([0.6, 0.9])
    assert len(nms(boxes, scores, 0.5, match="iou")) == 2
    (kept,) = nms(boxes, scores, 0.5, match="ios")
    assert np.array_equal(boxes[kept], true_box)


def test_nms_keeps_the_best_of_each_cluster():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10.5, 10], [51, 50, 61, 60]])
    scores = np.array([0.5, 0.9, 0.3, 0.7, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [1, 4]
    assert nms(boxes, scores, 0.99).tolist() == [1, 4, 3, 0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_tile_boxes_map_to_raster_pixels():
    tile = Tile(window=Window(100.0, 50.0, 256.0, 128.0), size=128, row=0, col=0)
    boxes = tile_box_to_raster(tile, np.array([[0, 0, 128, 128], [10, 20, 30, 40]]))
    np.testing.assert_allclose(boxes, [[100, 50, 356, 178], [120, 70, 160, 90]])
