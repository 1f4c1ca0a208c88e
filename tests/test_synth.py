"""Synthetic pairs from georeferenced rasters: boxes on real objects, clicks on them, splits by ground, dates paired."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from rasterio.transform import from_origin

from raster_factory import write_geotiff
from smgeo_cli.data.cvogl import QUERY_DIR, SATELLITE_DIR, CVOGLDataset, load_records
from smgeo_cli.data.drone import camera_homography, degrade
from smgeo_cli.data.geometry import apply_homography, translation, warp_square
from smgeo_cli.data.pairs import CATEGORY_OBJECT
from smgeo_cli.data.synth import write_synth_dataset
from smgeo_cli.images import read_rgb

QUERY, REF, GSD = 64, 128, 0.5
SIZE = 1024  # raster side, pixels: 512 m, sixteen 128 m split blocks (2 tiles wide)
# A corner on the 128 m block grid, so every block lies wholly on the raster.
ORIGIN_X, ORIGIN_Y = 499_968.0, 4_983_040.0
PALETTE = np.array(
    [(220, 40, 40), (240, 210, 30), (40, 190, 60), (30, 200, 220), (50, 70, 230), (210, 50, 200)], dtype=np.uint8
)


def _rectangles(seed: int) -> list[tuple[int, int, int, int]]:
    """Rectangles (x1, y1, x2, y2) in raster pixels, 20-28 m across, on a jittered grid, none touching."""
    rng = np.random.default_rng(seed)
    boxes = []
    for top in range(8, SIZE - 72, 72):
        for left in range(8, SIZE - 72, 72):
            width, height = rng.integers(40, 57, size=2)
            x, y = left + rng.integers(0, 64 - width + 1), top + rng.integers(0, 64 - height + 1)
            boxes.append((int(x), int(y), int(x + width), int(y + height)))
    return boxes


def _write_scene(path, rectangles, colours, seed=0, shift_m=0.0):
    """A 0.5 m RGB GeoTIFF of fine-grained muted ground holding the rectangles in the given colours.

    shift_m moves the whole raster east and south, off the first one's pixel grid.
    """
    rng = np.random.default_rng(seed)
    ground = np.array([110, 118, 96], dtype=np.float32) + rng.normal(0, 14, size=(SIZE, SIZE, 1))
    ground = cv2.GaussianBlur(ground.astype(np.float32), (0, 0), 1.0)
    image = np.clip(np.broadcast_to(ground.reshape(SIZE, SIZE, -1), (SIZE, SIZE, 3)), 0, 255).astype(np.uint8).copy()
    for (x1, y1, x2, y2), colour in zip(rectangles, colours):
        image[y1:y2, x1:x2] = colour
    return write_geotiff(path, np.moveaxis(image, -1, 0), transform=from_origin(ORIGIN_X + shift_m, ORIGIN_Y - shift_m, GSD, GSD))


def _tile_offset(sat_name: str) -> tuple[float, float]:
    """Top-left of a tile in raster pixels, from its CVOGL name (centre easting, northing, extent)."""
    easting, northing, extent, epsg = sat_name.removesuffix(".jpg").split("_")
    assert epsg == "32633"
    half = float(extent) / 2
    return (float(easting) - half - ORIGIN_X) / GSD, (ORIGIN_Y - float(northing) - half) / GSD


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _matched_rectangle(record, rectangles) -> int:
    """Index of the drawn rectangle the record's box covers (IoU >= 0.7), mapped to raster pixels."""
    dx, dy = _tile_offset(record.sat_name)
    x1, y1, x2, y2 = record.box_xyxy
    box = (x1 + dx, y1 + dy, x2 + dx, y2 + dy)
    best = max(range(len(rectangles)), key=lambda i: _iou(box, rectangles[i]))
    assert _iou(box, rectangles[best]) >= 0.7, (record, box, rectangles[best])
    return best


def _colour_at(image, xy) -> np.ndarray:
    return image[int(xy[1]), int(xy[0])].astype(int)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    rectangles = _rectangles(1)
    colours = PALETTE[np.arange(len(rectangles)) % len(PALETTE)]
    return folder, rectangles, colours, _write_scene(folder / "a.tif", rectangles, colours)


def _synth(rasters, out, n=12, seed=0, **options):
    options = {"val_frac": 0.25, "test_frac": 0.25, "query_size": QUERY, "ref_size": REF, "degrade": False} | options
    return write_synth_dataset(rasters, out, n, seed=seed, **options)


@pytest.fixture(scope="module")
def dataset(scene):
    folder, _, _, raster = scene
    summary = _synth([raster], folder / "out")
    return folder / "out", summary


def test_every_split_loads_and_boxes_cover_drawn_objects(scene, dataset):
    _, rectangles, colours, _ = scene
    root, summary = dataset
    assert summary.counts == {"train": 6, "val": 3, "test": 3}
    assert summary.fallbacks <= 1
    for split, count in summary.counts.items():
        loaded = CVOGLDataset(root, split, QUERY, REF)
        assert len(loaded) == count
        item = loaded[0]
        assert item["query"].shape == (3, QUERY, QUERY) and item["ref"].shape == (3, REF, REF)
        for index, record in enumerate(loaded.records):
            x1, y1, x2, y2 = record.box_xyxy
            assert 0 <= x1 < x2 <= REF and 0 <= y1 < y2 <= REF
            # Training learns box sizes from found objects only, not from random fallbacks.
            assert loaded[index]["box_has_extent"] == (record.category == CATEGORY_OBJECT)
            if record.category != CATEGORY_OBJECT:
                continue
            drawn = _matched_rectangle(record, rectangles)
            # The click is on the object in the drone view: its colour, up to warping and JPEG.
            query = read_rgb(root / QUERY_DIR / record.query_name)
            assert np.abs(_colour_at(query, record.click_xy) - colours[drawn]).max() < 40
            assert 0 <= record.click_xy[0] < QUERY and 0 <= record.click_xy[1] < QUERY


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_homographies_give_every_query_pixel_its_place_in_the_tile(dataset):
    root, _ = dataset
    # Other sizes than the files' and augmentation on: the labels must follow both.
    loaded = CVOGLDataset(root, "train", query_size=48, ref_size=96, augment=True, seed=5)
    for index in range(len(loaded)):
        item = loaded[index]
        homography = item["homography"].double().numpy()
        reference = item["ref"].mean(dim=0).numpy()
        query = item["query"].mean(dim=0).numpy()
        warped = warp_square(reference, homography, 48, cv2.INTER_LINEAR)
        to_cv = translation(-0.5, -0.5) @ homography @ translation(0.5, 0.5)
        inside = cv2.warpPerspective(np.ones((96, 96), np.uint8), to_cv, (48, 48), flags=cv2.INTER_NEAREST) > 0
        shifted = warp_square(reference, translation(12, 0) @ homography, 48, cv2.INTER_LINEAR)
        assert inside.mean() > 0.02  # the photo may see much more ground than the tile holds
        assert _ncc(warped[inside], query[inside]) > 0.5 > _ncc(shifted[inside], query[inside])


def test_objects_sit_anywhere_in_their_tiles(dataset):
    root, _ = dataset
    centres = [
        ((r.box_xyxy[0] + r.box_xyxy[2]) / 2, (r.box_xyxy[1] + r.box_xyxy[3]) / 2)
        for split in ("train", "val", "test")
        for r in load_records(root, split)
    ]
    assert np.ptp(np.array(centres), axis=0).min() > REF / 4


def test_splits_do_not_share_ground(dataset):
    root, _ = dataset
    footprints = {
        split: [_tile_offset(r.sat_name) for r in load_records(root, split)] for split in ("train", "val", "test")
    }
    for held_out in ("val", "test"):
        for hx, hy in footprints[held_out]:
            for tx, ty in footprints["train"]:
                assert abs(hx - tx) >= REF or abs(hy - ty) >= REF
    assert not set(footprints["val"]) & set(footprints["test"])


def test_test_frac_one_writes_a_held_out_set_only(scene, tmp_path):
    # Imagery kept out of training becomes a test set on its own.
    _, _, _, raster = scene
    summary = _synth([raster], tmp_path / "held_out", n=4, val_frac=0.0, test_frac=1.0)
    assert summary.counts == {"train": 0, "val": 0, "test": 4}
    assert len(load_records(tmp_path / "held_out", "test")) == 4
    assert not list((tmp_path / "held_out").glob("*_train.pth"))


def test_same_seed_same_pairs_other_seed_other_pairs(scene, dataset, tmp_path):
    _, _, _, raster = scene
    root, _ = dataset
    _synth([raster], tmp_path / "again")
    _synth([raster], tmp_path / "other", seed=1)
    for split in ("train", "val", "test"):
        assert load_records(root, split) == load_records(tmp_path / "again", split)
        assert load_records(root, split) != load_records(tmp_path / "other", split)
    for name in (root / QUERY_DIR).iterdir():
        assert name.read_bytes() == (tmp_path / "again" / QUERY_DIR / name.name).read_bytes()


@pytest.mark.parametrize("shift_m", [0.0, 0.15])
def test_two_dates_give_query_from_one_and_reference_from_the_other(scene, tmp_path, shift_m):
    _, rectangles, colours, first = scene
    # The second date: same ground (on another pixel grid, or not), every object repainted in another colour.
    recoloured = PALETTE[(np.arange(len(rectangles)) + 3) % len(PALETTE)]
    second = _write_scene(tmp_path / "b.tif", rectangles, recoloured, seed=5, shift_m=shift_m)
    _synth([first, second], tmp_path / "out", n=8, val_frac=0.0, test_frac=0.0)
    checked = 0
    for record in load_records(tmp_path / "out", "train"):
        if record.category != CATEGORY_OBJECT:
            continue
        drawn = _matched_rectangle(record, rectangles)
        tile = read_rgb(tmp_path / "out" / SATELLITE_DIR / record.sat_name)
        x1, y1, x2, y2 = (int(v) for v in record.box_xyxy)
        in_tile = tile[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0)
        query = read_rgb(tmp_path / "out" / QUERY_DIR / record.query_name)
        at_click = _colour_at(query, record.click_xy)
        # The tile shows one date's colour for the object and the query the other's.
        tile_date = 0 if np.abs(in_tile - colours[drawn]).max() < 30 else 1
        assert np.abs(in_tile - (colours, recoloured)[tile_date][drawn]).max() < 30
        assert np.abs(at_click - (recoloured, colours)[tile_date][drawn]).max() < 40
        checked += 1
    assert checked >= 6


def test_camera_pitch_gives_true_perspective():
    aim = np.array([500.0, 500.0])
    ground = np.array([[500.0, 500.0], [510.0, 500.0], [500.0, 490.0], [500.0, 510.0]])
    nadir = apply_homography(camera_homography(90.0, 0.0, 60.0, 100.0, aim, 256), ground)
    # Straight down and heading north: the aim in the middle, east to the right, north up, no foreshortening.
    np.testing.assert_allclose(nadir[0], (128, 128))
    right, up, down = nadir[1] - nadir[0], nadir[0] - nadir[2], nadir[3] - nadir[0]
    np.testing.assert_allclose([right[1], up[0]], 0, atol=1e-9)
    np.testing.assert_allclose(right[0], up[1])
    np.testing.assert_allclose(up[1], down[1])
    oblique = apply_homography(camera_homography(30.0, 0.0, 40.0, 100.0, aim, 256), ground)
    across = oblique[1, 0] - oblique[0, 0]
    far, near = oblique[0, 1] - oblique[2, 1], oblique[3, 1] - oblique[0, 1]
    # At 30 degrees, ground along the view shrinks by about sin(30) and the far side more than the near.
    assert 0.4 < (far + near) / 2 / across < 0.6 and far < near
    east = apply_homography(camera_homography(90.0, 90.0, 60.0, 100.0, aim, 256), ground)
    assert east[1, 1] < east[0, 1]  # heading east: east is up


def test_cli_writes_pairs_and_reports_missing_raster(scene, tmp_path):
    _, _, _, raster = scene
    command = [sys.executable, "-m", "smgeo_cli", "synth", "--out", str(tmp_path / "out"), "--n", "3",
               "--query-size", str(QUERY), "--ref-size", str(REF), "--val-frac", "0", "--test-frac", "0", "-q"]
    done = subprocess.run([*command[:4], str(raster), *command[4:]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "train: 3 pairs" in done.stdout and len(load_records(tmp_path / "out", "train")) == 3
    missing = subprocess.run([*command[:4], str(tmp_path / "nope.tif"), *command[4:]], capture_output=True, text=True)
    assert missing.returncode == 3
    assert missing.stderr.count("\n") == 1 and "nope.tif" in missing.stderr


def test_degrade_changes_look_not_geometry():
    view = np.zeros((64, 64, 3), dtype=np.uint8)
    view[:, 32:] = (200, 60, 40)  # a sharp vertical edge
    looks = [degrade(view, np.random.default_rng(seed), pitch_deg=40.0) for seed in range(8)]
    for look in looks:
        assert look.shape == view.shape and look.dtype == np.uint8
        # The edge stays where it was: left half darker than the right in the red channel.
        assert look[:, :28, 0].mean() + 40 < look[:, 36:, 0].mean()
    # Every draw looks different from the archive and from the others.
    assert min(np.abs(look.astype(int) - view).mean() for look in looks) > 3
    assert len({look.tobytes() for look in looks}) == len(looks)
    np.testing.assert_array_equal(degrade(view, np.random.default_rng(0)), degrade(view, np.random.default_rng(0)))
