"""The bundled example in examples/data/ is consistent: its truth holds without running any locate method.

truth.csv gives, per photo, the click, the object's true box on the reference
(raster CRS and reference pixels) and the homography that rendered the photo
(reference pixels -> photo pixels, pixel-edge convention), so the checks here
are pure geometry plus one image check that the homography matches the pixels.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rasterio.windows import Window

from conftest import run_cli
from smgeo_cli.batch import build_queries
from smgeo_cli.data.geometry import apply_homography, translation, warp_square
from smgeo_cli.geo.coords import xy_to_pixel
from smgeo_cli.geo.raster import open_reference, read_window
from smgeo_cli.images import read_rgb
from smgeo_cli.matching.matcher import window_corners
from smgeo_cli.metrics import cvogl_iou

EXAMPLE = Path(__file__).parent.parent / "examples" / "data"
REFERENCE = EXAMPLE / "pan1.tif"
TRUTH = list(csv.DictReader((EXAMPLE / "truth.csv").open(encoding="utf-8")))


def _homography(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row[f"h{i}{j}"]) for i in range(3) for j in range(3)]).reshape(3, 3)


def _pixel_box(row: dict[str, str]) -> tuple[float, float, float, float]:
    return tuple(float(row[key]) for key in ("x1", "y1", "x2", "y2"))


@pytest.fixture(scope="module")
def reference():
    with open_reference(REFERENCE) as raster:
        yield raster


def test_truth_lists_several_distinct_objects():
    assert len(TRUTH) >= 3
    assert len({row["label"] for row in TRUTH}) == len(TRUTH)
    assert all((EXAMPLE / row["image"]).is_file() for row in TRUTH)


@pytest.mark.parametrize("row", TRUTH, ids=lambda row: row["image"])
def test_true_box_lies_inside_the_raster_in_both_coordinate_systems(reference, row):
    assert row["crs"] == reference.crs.to_string() == "EPSG:32631"
    minx, miny, maxx, maxy = (float(row[key]) for key in ("minx", "miny", "maxx", "maxy"))
    cols, rows = xy_to_pixel(reference.transform, np.array([minx, maxx]), np.array([maxy, miny]))
    np.testing.assert_allclose([cols[0], rows[0], cols[1], rows[1]], _pixel_box(row), atol=0.1)
    x1, y1, x2, y2 = _pixel_box(row)
    assert 0 <= x1 < x2 <= reference.width and 0 <= y1 < y2 <= reference.height
    # Objects of 20-150 m, as the issue asks.
    assert 20 <= max(maxx - minx, maxy - miny) <= 150


@pytest.mark.parametrize("row", TRUTH, ids=lambda row: row["image"])
def test_click_lies_inside_its_photo(row):
    height, width = read_rgb(EXAMPLE / row["image"]).shape[:2]
    assert 0 <= float(row["click_x"]) < width and 0 <= float(row["click_y"]) < height


def test_clicks_csv_loads_as_a_batch_matching_the_truth():
    queries = build_queries(EXAMPLE, EXAMPLE / "clicks.csv")
    assert [q.photo.name for q in queries] == [row["image"] for row in TRUTH]
    assert [q.label for q in queries] == [row["label"] for row in TRUTH]
    assert [q.click for q in queries] == [(float(row["click_x"]), float(row["click_y"])) for row in TRUTH]
    assert all(q.photo.is_file() for q in queries)


@pytest.mark.parametrize("row", TRUTH, ids=lambda row: row["image"])
def test_true_box_seen_through_the_render_homography_surrounds_the_click(row):
    homography = _homography(row)
    seen = apply_homography(homography, window_corners(_pixel_box(row)))
    click = (float(row["click_x"]), float(row["click_y"]))
    assert np.all((seen >= 0) & (seen <= 512)), "the whole object is in view"
    assert cv2.pointPolygonTest(seen.astype(np.float32), click, measureDist=True) > 5.0
    # And back: the click lands on the reference inside the true box.
    cx, cy = apply_homography(np.linalg.inv(homography), np.array([click]))[0]
    x1, y1, x2, y2 = _pixel_box(row)
    assert x1 < cx < x2 and y1 < cy < y2


def _edges(grey: np.ndarray) -> np.ndarray:
    """Gradient magnitude after a blur wide enough to wash out sensor, JPEG and 1 m-source differences."""
    grey = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 4.0)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


@pytest.mark.parametrize("row", TRUTH, ids=lambda row: row["image"])
def test_photo_pixels_agree_with_the_reference_through_the_homography(reference, row):
    """The stored homography is the one the photo was rendered with, not a near miss.

    Around the object, the reference warped into the photo's frame correlates
    with the photo far better than the reference warped with the ground
    shifted by 10 m (20 pixels) either way.
    """
    grey = read_window(reference, Window(0, 0, reference.width, reference.height), (reference.height, reference.width))[0]
    photo = _edges(cv2.cvtColor(read_rgb(EXAMPLE / row["image"]), cv2.COLOR_RGB2GRAY))
    homography = _homography(row)
    seen = np.round(apply_homography(homography, window_corners(_pixel_box(row)))).astype(np.int32)
    near = cv2.dilate(cv2.fillPoly(np.zeros(photo.shape, np.uint8), [seen], 1), np.ones((61, 61), np.uint8)) > 0

    def correlation(h: np.ndarray) -> float:
        rendered = _edges(warp_square(grey[..., 0], h, photo.shape[0], cv2.INTER_LINEAR))
        return float(np.corrcoef(photo[near], rendered[near])[0, 1])

    right = correlation(homography)
    shifted = max(correlation(homography @ translation(dx, dy)) for dx, dy in ((20, 0), (0, 20), (-20, 0), (0, -20)))
    assert right > 0.4 and right > shifted + 0.2, (right, shifted)


def test_score_script_counts_a_true_box_as_found_and_a_shifted_one_as_missed(tmp_path):
    first, second = TRUTH[0], TRUTH[1]
    shifted = [v + 200.0 for v in _pixel_box(second)]
    features = [
        {"type": "Feature", "geometry": None,
         "properties": {"query": row["image"], "rank": 1, "score": 0.9, "bbox_px": list(box)}}
        for row, box in ((first, _pixel_box(first)), (second, shifted))
    ]  # fmt: skip
    answers = tmp_path / "hits.geojson"
    answers.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    script = EXAMPLE.parent / "score.py"
    printed = subprocess.run([sys.executable, script, answers], capture_output=True, text=True, check=True).stdout
    lines = {line.split()[0]: line for line in printed.splitlines() if line.endswith(")")}
    assert "IoU 1.00  found" in lines[first["image"]]
    assert "IoU 0.00  missed" in lines[second["image"]]
    assert printed.splitlines()[-1] == f"2 of the {len(TRUTH)} example photos have a hit here; 1 found (IoU > 0.5)"


def test_locate_without_weights_uses_the_bundled_model_and_lands_on_the_white_roof(monkeypatch, capsys):
    # The bundled model's best example (see examples/README.md): its hit centre is on the clicked building.
    row = next(r for r in TRUTH if r["image"] == "white_roof_building.jpg")
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "locate", EXAMPLE / row["image"], "--click", f"{row['click_x']},{row['click_y']}",
        "--ref", REFERENCE, "--method", "smgeo", "--json", "-q",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(stdout)
    assert summary["model"] == "smgeo-nano-bundled"
    x1, y1, x2, y2 = summary["hits"][0]["bbox_px"]
    tx1, ty1, tx2, ty2 = _pixel_box(row)
    assert tx1 < (x1 + x2) / 2 < tx2 and ty1 < (y1 + y2) / 2 < ty2


def test_auto_finds_the_dark_roof_by_matching_and_falls_back_to_the_model_without_a_fit(monkeypatch, capsys, tmp_path):
    # The default method (examples/README.md): the matcher fits the dark-roofed building and its box is the
    # building's. A photo of no ground in the raster gets no fit, so the bundled model answers.
    row = next(r for r in TRUTH if r["image"] == "dark_roof_building.jpg")
    elsewhere = tmp_path / "elsewhere.jpg"
    cv2.imwrite(str(elsewhere), np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    answered = {}
    for photo, click in ((EXAMPLE / row["image"], f"{row['click_x']},{row['click_y']}"), (elsewhere, "256,256")):
        code, stdout, _ = run_cli(
            monkeypatch, capsys, "locate", photo, "--click", click, "--ref", REFERENCE, "--json", "-q"
        )
        assert code == 0
        summary = json.loads(stdout)
        answered[photo.name] = summary["model"], summary["hits"][0]["bbox_px"], summary["search"]["window_px"]
    model, hit, search_window = answered["dark_roof_building.jpg"]
    # The whole raster is searched: its size is the search window's.
    assert model == "match" and cvogl_iou(hit, _pixel_box(row), search_window[2:])[0] > 0.5
    assert answered["elsewhere.jpg"][0] == "smgeo-nano-bundled"
