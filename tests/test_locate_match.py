"""The matcher on a real aerial raster: ``locate --method match`` (same tiling, merging, output) and ``--verify``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import rasterio
from PIL import Image

from smgeo_cli.geo.output import Detection
from smgeo_cli.geo.raster import open_reference
from smgeo_cli.images import read_rgb
from smgeo_cli.locate import SearchArea, locate, locate_first_found
from smgeo_cli.matching import MatchDetector, detector
from smgeo_cli.verify import verify_hits

RASTER = Path(__file__).parent / "data" / "geo" / "test_tiled.tif"  # 1000 x 1000, 0.25 m, EPSG:28992


def drone_view_of(raster_rgb: np.ndarray, centre_xy: tuple[float, float], path: Path) -> tuple[float, float]:
    """A rotated, rescaled, slightly tilted photo of the ground around ``centre_xy``; returns where that point lands."""
    rotate = cv2.getRotationMatrix2D(centre_xy, 25.0, 1.3)
    homography = np.vstack([rotate, [0.0, 0.0, 1.0]])
    homography[2, :2] = (2e-5, -1e-5)  # mild perspective
    shift = np.array([[1, 0, 320 - centre_xy[0]], [0, 1, 240 - centre_xy[1]], [0, 0, 1]])
    to_photo = shift @ homography
    photo = cv2.warpPerspective(raster_rgb, to_photo, (640, 480), flags=cv2.INTER_LINEAR)
    Image.fromarray(photo).save(path, quality=90)
    x, y, w = to_photo @ np.array([centre_xy[0], centre_xy[1], 1.0])
    return x / w, y / w


def test_matcher_locates_a_click_on_a_real_raster(tmp_path):
    with rasterio.open(RASTER) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
        transform = src.transform
    target = (610.0, 380.0)  # full-raster pixel the click shows
    click = drone_view_of(rgb, target, tmp_path / "photo.jpg")

    result = locate(
        tmp_path / "photo.jpg",
        click,
        RASTER,
        MatchDetector(tile_size=512, gsd_m=0.25, query_max_side=640),
        search=SearchArea(use_gps=False),
        top_k=3,
    )
    assert result.tiles_scanned == result.tiles_planned >= 4
    best = result.detections[0]
    x1, y1, x2, y2 = best.box_px
    assert x1 < target[0] < x2 and y1 < target[1] < y2
    assert 0 < best.score <= 1 and result.features[0].properties["model"] == "match"
    # The footprint, in the raster's own CRS, holds the clicked ground point.
    world_x, world_y = transform @ target
    ring = result.features[0].ring_xy
    assert ring[:, 0].min() < world_x < ring[:, 0].max() and ring[:, 1].min() < world_y < ring[:, 1].max()
    assert len(result.detections) == len({d.rank for d in result.detections})


def test_locate_command_with_method_match_and_verify_writes_a_confirmed_footprint(tmp_path):
    with rasterio.open(RASTER) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    target = (400.0, 620.0)
    click = drone_view_of(rgb, target, tmp_path / "photo.jpg")
    out = tmp_path / "hit.geojson"
    result = subprocess.run(
        [
            sys.executable, "-m", "smgeo_cli", "locate", str(tmp_path / "photo.jpg"),
            "--click", f"{click[0]:.2f},{click[1]:.2f}", "--ref", str(RASTER),
            "--method", "match", "--gsd", "0.25", "--no-gps", "--verify", "-o", str(out), "-q",
        ],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    feature = json.loads(out.read_text())["features"][0]
    assert feature["properties"]["model"] == "match" and feature["properties"]["rank"] == 1
    x1, y1, x2, y2 = feature["properties"]["bbox_px"]
    assert x1 < target[0] < x2 and y1 < target[1] < y2
    # --verify: the matcher, run again around the hit, agrees with it.
    assert feature["properties"]["verified"] is True and feature["properties"]["verify_inliers"] >= 12


def test_verify_confirms_a_hit_on_the_clicked_ground_and_rejects_one_elsewhere(tmp_path):
    with rasterio.open(RASTER) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    target = (610.0, 380.0)
    click = drone_view_of(rgb, target, tmp_path / "photo.jpg")
    photo = read_rgb(tmp_path / "photo.jpg")
    right = Detection(box_px=(590.0, 360.0, 630.0, 400.0), score=0.9, rank=1)
    wrong = Detection(box_px=(120.0, 100.0, 160.0, 140.0), score=0.8, rank=2)
    with open_reference(RASTER) as raster:
        confirmed, rejected = verify_hits(raster, [right, wrong], photo, click, [MatchDetector(tile_size=512)])
    assert confirmed.confirmed and confirmed.inliers >= 12 and confirmed.distance_m < 2.0  # 0.25 m pixels
    assert not rejected.confirmed
    assert set(confirmed.properties()) == {"verified", "verify_inliers", "verify_distance_m"}


def _counting_photo_descriptions(monkeypatch) -> list[int]:
    """Count the descriptions of photos (the ones with simulated oblique views) the matcher makes."""
    calls = []
    original = detector.describe

    def counted(image, **kwargs):
        if kwargs.get("tilts"):  # tiles are described plain
            calls.append(image.shape)
        return original(image, **kwargs)

    monkeypatch.setattr(detector, "describe", counted)
    return calls


def test_more_clicks_on_one_photo_describe_it_once(tmp_path, monkeypatch):
    calls = _counting_photo_descriptions(monkeypatch)
    with rasterio.open(RASTER) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    drone_view_of(rgb, (610.0, 380.0), tmp_path / "a.jpg")
    drone_view_of(rgb, (400.0, 620.0), tmp_path / "b.jpg")
    matcher = MatchDetector()
    first = matcher.encode_query(read_rgb(tmp_path / "a.jpg"), (100.0, 100.0))
    second = matcher.encode_query(read_rgb(tmp_path / "a.jpg"), (300.0, 200.0))  # read again: same pixels
    assert len(calls) == 1 and second.views is first.views and second.click_xy == (300.0, 200.0)
    assert not np.array_equal(first.outline, second.outline)  # each click still gets its own object
    matcher.encode_query(read_rgb(tmp_path / "b.jpg"), (100.0, 100.0))
    assert len(calls) == 2


def test_auto_with_verify_describes_the_photo_once(tmp_path, monkeypatch):
    calls = _counting_photo_descriptions(monkeypatch)
    with rasterio.open(RASTER) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    target = (610.0, 380.0)
    click = drone_view_of(rgb, target, tmp_path / "photo.jpg")
    matcher = MatchDetector(tile_size=512, gsd_m=0.25, query_max_side=640)
    result = locate_first_found(
        tmp_path / "photo.jpg", click, RASTER, [matcher], search=SearchArea(use_gps=False), verify=True
    )
    assert result.model == "match" and result.features[0].properties["verified"] is True
    assert len(calls) == 1  # the search and the check of its hit share the photo's features
