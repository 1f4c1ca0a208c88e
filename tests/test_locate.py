"""The locate pipeline and `smgeo locate`: georeferenced output, tile seams, search areas, outputs and errors.

Geometry tests use stand-in detectors whose answers are known, so they check
locate's own tiling, merging and georeferencing; the command-line tests run an
untrained tiny SMGeo end to end (its accuracy is not what they check).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pyogrio
import pyproj
import pytest
from PIL import Image
from rasterio.transform import Affine, from_origin

from conftest import run_cli
from raster_factory import UTM_33N, write_geotiff, write_photo
from smgeo_cli import locate as locate_module
from smgeo_cli.data.toy import write_toy_dataset
from smgeo_cli.errors import NoDataError
from smgeo_cli.geo.coords import pixel_to_lonlat
from smgeo_cli.geo.flightlog import FULL_FRAME_DIAGONAL_MM, PhotoPose
from smgeo_cli.geo.raster import open_reference
from smgeo_cli.geo.search_area import full_window
from smgeo_cli.geo.tiling import plan_tiles, tile_box_to_raster
from smgeo_cli.locate import SearchArea, locate
from smgeo_cli.model import weights as weights_module
from smgeo_cli.preview import PREVIEW_HEIGHT
from stand_ins import GSD, TILE, BrightBoxDetector, FixedBoxDetector

PHOTO_SIZE = (80, 60)  # width, height
GRIDS = {
    "utm": (UTM_33N, from_origin(500_000.0, 4_983_000.0, 0.5, 0.5)),
    "web-mercator": ("EPSG:3857", from_origin(1_669_792.0, 5_621_521.0, 0.5, 0.5)),
    "lonlat": ("EPSG:4326", from_origin(15.0, 45.0, 5e-6, 5e-6)),
    "rotated": (UTM_33N, Affine.translation(500_000.0, 4_983_000.0) @ Affine.rotation(25.0) @ Affine.scale(0.5, -0.5)),
}


def _raster(path, shape, box=None, crs=UTM_33N, transform=GRIDS["utm"][1], **profile):
    """A (rows, cols) RGB GeoTIFF, dark with a bright object on pixel box ``box``."""
    data = np.full((3, *shape), 40, dtype=np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        data[:, y1:y2, x1:x2] = 250
    return write_geotiff(path, data, crs=crs, transform=transform, **profile)


def _true_corners(crs, transform, box):
    """A pixel box's corners in the raster CRS, from the affine coefficients alone."""
    x1, y1, x2, y2 = box
    cols, rows = np.array([x1, x2, x2, x1]), np.array([y1, y1, y2, y2])
    a, b, c, d, e, f = transform[:6]
    return np.column_stack([a * cols + b * rows + c, d * cols + e * rows + f])


def _lonlat_bounds(crs, corners):
    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lons, lats = to_lonlat.transform(corners[:, 0], corners[:, 1])
    return np.array([min(lons), min(lats), max(lons), max(lats)])


@pytest.mark.parametrize("grid", list(GRIDS))
def test_polygon_is_the_true_world_footprint_of_the_detected_tile_box(tmp_path, grid):
    crs, transform = GRIDS[grid]
    path = _raster(tmp_path / "ref.tif", (100, 120), crs=crs, transform=transform)
    detector = FixedBoxDetector()
    result = locate(write_photo(tmp_path / "p.jpg"), (10, 20), path, detector, search=SearchArea(use_gps=False))

    with open_reference(path) as raster:
        (tile,) = plan_tiles(full_window(raster), raster.gsd_m, GSD, TILE)
    (expected,) = tile_box_to_raster(tile, detector.box)
    (detection,) = result.detections
    np.testing.assert_allclose(detection.box_px, expected, rtol=0, atol=1e-9)
    (feature,) = result.features
    assert feature.properties["bbox_px"] == [round(v, 3) for v in expected]
    assert feature.properties["score"] == 0.8 and feature.properties["rank"] == 1

    true_xy = _true_corners(crs, transform, expected)
    pixel_size = math.hypot(transform.a, transform.d)
    to_native = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    for ring in (feature.ring_xy, np.column_stack(to_native.transform(*feature.ring_lonlat.T))):
        distances = np.linalg.norm(ring[:4, None, :] - true_xy[None, :, :], axis=2)
        assert sorted(distances.argmin(axis=1)) == [0, 1, 2, 3]
        assert distances.min(axis=1).max() < 1e-6 * pixel_size


def test_object_straddling_two_tiles_comes_out_once_with_one_box(tmp_path):
    # 220 px at 0.5 m need two 128 px tiles a row: columns ~0-128 and ~92-220.
    # The object (columns 100-140) is cut by the first tile's side, whole in the second.
    box = (100, 60, 140, 100)
    path = _raster(tmp_path / "ref.tif", (160, 220), box)
    detector = BrightBoxDetector()
    result = locate(write_photo(tmp_path / "p.jpg"), (10, 20), path, detector, top_k=5, search=SearchArea(use_gps=False))
    assert result.tiles_planned == 4 and detector.found == 4
    (detection,) = result.detections
    np.testing.assert_allclose(detection.box_px, box, atol=1.0)


def test_hits_on_padding_or_nodata_are_dropped(tmp_path):
    # One tile centred on a 120 x 100 raster: its top-left corner is padding.
    path = _raster(tmp_path / "ref.tif", (100, 120))
    result = locate(
        write_photo(tmp_path / "p.jpg"), (10, 20), path, FixedBoxDetector(box=(0, 0, 6, 6)), search=SearchArea(use_gps=False)
    )
    assert result.tiles_scanned == 1 and result.detections == [] and result.features == []


def test_cached_tiles_are_neither_read_nor_encoded_again(tmp_path, monkeypatch):
    path = _raster(tmp_path / "ref.tif", (160, 220), (100, 60, 140, 100))
    photo = write_photo(tmp_path / "p.jpg")
    detector, cache = BrightBoxDetector(), {}
    first = locate(photo, (10, 20), path, detector, search=SearchArea(use_gps=False), cache=cache)
    assert detector.encoded == 4 and len(cache) == 4
    monkeypatch.setattr("smgeo_cli.locate.iter_tiles", lambda *args: pytest.fail("a cached tile was read"))
    second = locate(photo, (30, 40), path, detector, search=SearchArea(use_gps=False), cache=cache)
    assert detector.encoded == 4
    assert second.detections == first.detections and second.click == (30.0, 40.0)


def test_gps_prior_searches_a_circle_unless_off_and_a_bbox_wins(tmp_path):
    path = _raster(tmp_path / "ref.tif", (200, 200))  # 100 m square
    transform = GRIDS["utm"][1]
    lons, lats = pixel_to_lonlat(UTM_33N, transform, [100.0], [100.0])
    photo = write_photo(tmp_path / "p.jpg", latlon=(lats[0], lons[0]))
    detector = FixedBoxDetector()

    near = locate(photo, (10, 20), path, detector, search=SearchArea(radius_m=20.0))
    assert near.search.kind == "gps"
    np.testing.assert_allclose(near.search.ground_point, (lons[0], lats[0]))
    window = near.search.window
    # 20 m at 0.5 m pixels: 40 px either side of the centre (UTM scale error < 0.1%).
    placement = [window.col_off, window.row_off, window.width, window.height]
    np.testing.assert_allclose(placement, [60, 60, 80, 80], atol=0.5)

    whole = locate(photo, (10, 20), path, detector, search=SearchArea(use_gps=False))
    assert whole.search.kind == "raster" and whole.search.window.width == 200

    x0, y0 = transform @ (10, 10)
    boxed = locate(photo, (10, 20), path, detector, search=SearchArea(bbox=(x0, y0 - 25.0, x0 + 25.0, y0)))
    assert boxed.search.kind == "bbox" and boxed.search.window.width == pytest.approx(50)


def test_the_photos_heading_and_ground_sample_distance_reach_the_detector(tmp_path):
    path = _raster(tmp_path / "ref.tif", (200, 200))
    lons, lats = pixel_to_lonlat(UTM_33N, GRIDS["utm"][1], [100.0], [100.0])
    photo = write_photo(tmp_path / "p.jpg", latlon=(lats[0], lons[0]), focal_35mm=24)
    detector = FixedBoxDetector()
    # A manifest row's pose: 40 m above take-off, camera at nadir facing 30 degrees east of north.
    pose = PhotoPose(lats[0], lons[0], rel_alt_m=40.0, yaw_deg=30.0, pitch_deg=-90.0, source="csv")
    locate(photo, (10, 20), path, detector, pose=pose)
    locate(photo, (10, 20), path, detector, search=SearchArea(use_gps=False))  # its EXIF: focal length, no height
    gsd_m = 40.0 * FULL_FRAME_DIAGONAL_MM / 24 / math.hypot(*PHOTO_SIZE)
    assert detector.photo_hints == [(30.0, pytest.approx(gsd_m / GSD)), (None, None)]


def test_all_nodata_search_area_is_an_error(tmp_path):
    path = write_geotiff(tmp_path / "empty.tif", np.zeros((3, 100, 120), np.uint8), nodata=0)
    with pytest.raises(NoDataError, match="no valid pixels in the search area"):
        locate(write_photo(tmp_path / "p.jpg"), (10, 20), path, FixedBoxDetector(), search=SearchArea(use_gps=False))


def test_a_raster_smaller_than_a_tile_pixel_is_not_called_all_nodata(tmp_path):
    """A valid 1 x 1 raster holds data: the error says what is wrong with it (its size), not "all nodata"."""
    path = write_geotiff(tmp_path / "one.tif", np.full((3, 1, 1), 120, np.uint8))
    with pytest.raises(NoDataError, match=r"one\.tif is 1 x 1 pixels: it holds data, but less than a whole tile pixel"):
        locate(write_photo(tmp_path / "p.jpg"), (10, 20), path, FixedBoxDetector(), search=SearchArea(use_gps=False))


# Command line.


def test_cli_geojson_loads_in_ogr_with_the_object_extent(tmp_path, monkeypatch, capsys, weights):
    box = (100, 60, 140, 100)
    ref = _raster(tmp_path / "ref.tif", (160, 220), box)
    monkeypatch.setattr(locate_module, "SMGeoDetector", lambda model: BrightBoxDetector())
    out = tmp_path / "hit.geojson"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "locate", write_photo(tmp_path / "p.jpg"), "--click", "40,30", "--ref", ref,
        "-o", out, "--method", "smgeo", "--weights", weights, "--no-gps", "--device", "cpu",
    )  # fmt: skip
    assert code == 0 and stdout == ""
    info = pyogrio.read_info(out, force_total_bounds=True)
    assert info["features"] == 1 and info["crs"] == "EPSG:4326"
    true_bounds = _lonlat_bounds(UTM_33N, _true_corners(UTM_33N, GRIDS["utm"][1], box))
    pixel_deg = 0.5 / 111_000 / math.cos(math.radians(45))  # a pixel in longitude degrees, generously
    np.testing.assert_allclose(info["total_bounds"], true_bounds, rtol=0, atol=pixel_deg)


def test_cli_with_the_model_stdout_json_gpkg_and_preview(tmp_path, monkeypatch, capsys, weights):
    ref = _raster(tmp_path / "ref.tif", (200, 200), (90, 90, 110, 110))
    common = ["locate", write_photo(tmp_path / "p.jpg"), "--click", "40,30", "--ref", ref,
              "--method", "smgeo", "--weights", weights, "--no-gps", "--device", "cpu", "-q"]  # fmt: skip

    code, stdout, stderr = run_cli(monkeypatch, capsys, *common)
    assert code == 0 and stderr == ""
    collection = json.loads(stdout)
    (feature,) = collection["features"]
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    assert feature["properties"]["model"] == "tiny" and feature["properties"]["rank"] == 1
    bbox_px = feature["properties"]["bbox_px"]

    code, stdout, _ = run_cli(monkeypatch, capsys, *common, "--json", "--top-k", "2")
    summary = json.loads(stdout)
    assert code == 0 and summary["tiles"] == {"planned": 4, "scanned": 4}
    assert [hit["rank"] for hit in summary["hits"]] == list(range(1, len(summary["hits"]) + 1))
    assert 1 <= len(summary["hits"]) <= 2 and summary["hits"][0]["bbox_px"] == bbox_px
    assert summary["search"]["kind"] == "raster" and set(summary["timings_s"]) == {"query", "scan", "total"}

    gpkg, preview = tmp_path / "hit.gpkg", tmp_path / "preview.png"
    code, stdout, _ = run_cli(monkeypatch, capsys, *common, "-o", gpkg, "--preview", preview)
    assert code == 0 and stdout == ""
    info = pyogrio.read_info(gpkg, force_total_bounds=True)
    assert info["features"] == 1 and info["crs"] == "EPSG:32633"
    corners = _true_corners(UTM_33N, GRIDS["utm"][1], bbox_px)
    np.testing.assert_allclose(info["total_bounds"], [*corners.min(axis=0), *corners.max(axis=0)], rtol=0, atol=1e-3)
    with Image.open(preview) as image:
        assert image.format == "PNG"
        rgb = np.asarray(image.convert("RGB")).astype(int)
    height = PREVIEW_HEIGHT
    photo_width = round(height * PHOTO_SIZE[0] / PHOTO_SIZE[1])
    assert rgb.shape == (height, photo_width + 8 + height, 3)  # the photo beside the square reference crop
    scale = height / PHOTO_SIZE[1]
    click_mark = rgb[round(30 * scale) - 20 : round(30 * scale) + 20, round(40 * scale) - 20 : round(40 * scale) + 20]
    assert ((click_mark[..., 0] > 200) & (click_mark[..., 1] > 200) & (click_mark[..., 2] < 60)).any()  # yellow
    crop = rgb[:, photo_width + 8 :]
    assert ((crop[..., 0] > 200) & (crop[..., 1] < 60) & (crop[..., 2] < 60)).sum() > 100  # the red box


ERROR_CASES = {
    # name: (build the photo and raster -> (photo, ref, extra args), exit code, words in the message)
    "missing photo": (lambda t: (t / "nope.jpg", _raster(t / "r.tif", (50, 50)), []), 3, "nope.jpg"),
    "raster without georeferencing": (
        lambda t: (write_photo(t / "p.jpg"), _raster(t / "r.tif", (50, 50), crs=None, transform=None), []),
        4,
        "not georeferenced",
    ),
    "click outside the image": (
        lambda t: (write_photo(t / "p.jpg"), _raster(t / "r.tif", (50, 50)), ["--click", "80,10"]), 2, "80 x 60 pixels"
    ),
    "gps outside the raster": (
        lambda t: (write_photo(t / "p.jpg", latlon=(10.0, 10.0)), _raster(t / "r.tif", (50, 50)), []), 4, "outside raster"
    ),
    "no valid data": (
        lambda t: (write_photo(t / "p.jpg"), write_geotiff(t / "r.tif", np.zeros((3, 50, 50), np.uint8), nodata=0), []),
        6,
        "no valid pixels",
    ),
    "bad click": (lambda t: (write_photo(t / "p.jpg"), _raster(t / "r.tif", (50, 50)), ["--click", "4;3"]), 2, "--click"),
    "bad bands": (lambda t: (write_photo(t / "p.jpg"), _raster(t / "r.tif", (50, 50)), ["--bands", "1.5"]), 2, "--bands"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_cli_errors_are_one_line_with_their_exit_code(tmp_path, monkeypatch, capsys, weights, case):
    build, exit_code, words = ERROR_CASES[case]
    photo, ref, extra = build(tmp_path)
    args = ["locate", photo, "--click", "10,10", "--ref", ref, "--weights", weights, "--device", "cpu", *extra]
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == exit_code and stdout == ""
    assert stderr.startswith("smgeo: error: ") and stderr.count("\n") == 1 and words in stderr


@pytest.mark.parametrize("command", ["locate", "eval"])
def test_cli_without_weights_or_bundled_model_asks_for_weights(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights_module, "BUNDLED_WEIGHTS", tmp_path / "smgeo-nano-bundled")
    if command == "locate":
        photo, raster = write_photo(tmp_path / "p.jpg"), _raster(tmp_path / "r.tif", (50, 50))
        args = ["locate", photo, "--click", "1,1", "--ref", raster]
    else:
        write_toy_dataset(tmp_path / "toy", 1, splits=("test",), query_size=64, ref_size=128)
        args = ["eval", tmp_path / "toy", "--method", "smgeo"]
    code, _, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 5 and "--weights" in stderr and stderr.count("\n") == 1


def test_eval_without_weights_scores_the_bundled_model(tmp_path, monkeypatch, capsys):
    write_toy_dataset(tmp_path / "toy", 2, splits=("test",), query_size=64, ref_size=128)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "eval", tmp_path / "toy", "--method", "smgeo", "--json", "-q")
    assert code == 0, stderr
    assert json.loads(stdout)["n"] == 4  # two scenes, a pair per object


@pytest.mark.slow
def test_module_entry_point_prints_no_traceback(tmp_path, weights):
    args = ["locate", tmp_path / "missing.jpg", "--click", "1,1", "--ref", tmp_path / "r.tif", "--weights", weights]
    done = subprocess.run([sys.executable, "-m", "smgeo_cli", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_model_sees_a_photo_whose_heading_is_known_turned_north_up(weights):
    import torch

    from smgeo_cli.data.transforms import turn_with_points
    from smgeo_cli.model.weights import load_model

    detector = locate_module.SMGeoDetector(load_model(weights))
    photo = np.random.default_rng(5).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    facing_east = detector.encode_query(photo, (30.0, 20.0), heading_deg=90.0)
    turned, click = turn_with_points(photo, 90.0, np.array([30.0, 20.0]))
    assert torch.allclose(facing_east, detector.encode_query(turned, tuple(click)))
    assert not torch.allclose(facing_east, detector.encode_query(photo, (30.0, 20.0)))
