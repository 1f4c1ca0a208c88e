"""`smgeo batch`: the three inputs, per-query failures, crash and resume, the disk cache, torchrun sharding.

Logic tests run the command in this process with a stand-in detector whose
answer is known; the crash and torchrun tests run the real command in
subprocesses with an untrained tiny SMGeo (its accuracy is not what they check).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pyogrio
import pytest
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

from conftest import run_cli
from raster_factory import UTM_33N, UTM_TRANSFORM, write_geotiff, write_photo
from smgeo_cli.batch import TileCache, journal_path
from smgeo_cli.commands import batch_cmd
from smgeo_cli.geo.coords import pixel_to_lonlat
from smgeo_cli.geo.srt import read_srt
from smgeo_cli.geo.tiling import plan_grid_tiles
from smgeo_cli.locate import EncodedTile
from stand_ins import TILE, BrightBoxDetector

DATA = os.path.join(os.path.dirname(__file__), "data", "flightlog")

PHOTO_SIZE = (80, 60)  # width, height
OBJECT = (180, 140, 200, 160)  # bright box on the raster, full-raster pixels
RADIUS = "40"  # metres: a few tiles around each photo


@pytest.fixture
def stand_in(monkeypatch):
    detector = BrightBoxDetector()
    monkeypatch.setattr(batch_cmd, "method_detectors", lambda method, weights, device, features: [detector])
    return detector


def _raster(path, crs=UTM_33N, transform=UTM_TRANSFORM, shape=(300, 400)):
    data = np.full((3, *shape), 40, dtype=np.uint8)
    x1, y1, x2, y2 = OBJECT
    data[:, y1:y2, x1:x2] = 250
    return write_geotiff(path, data, crs=crs, transform=transform)


def _lonlat(col, row, crs=UTM_33N, transform=UTM_TRANSFORM):
    lon, lat = pixel_to_lonlat(crs, transform, np.array([col]), np.array([row]))
    return float(lon[0]), float(lat[0])


def _csv(path, header, rows):
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([header, *rows])
    return path


def _flight(tmp_path, count, clicks_per_photo=1):
    """A raster, ``count`` photos with EXIF GPS spread around the object, and their clicks CSV."""
    ref = _raster(tmp_path / "ref.tif")
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = []
    for i in range(count):
        col, row = 120 + (i * 37) % 160, 90 + (i * 23) % 120
        write_photo(photos / f"DJI_{i:04d}.JPG", latlon=_lonlat(col, row)[::-1])
        rows += [[f"DJI_{i:04d}.JPG", 10 + k, 20, f"obj{i}-{k}"] for k in range(clicks_per_photo)]
    clicks = _csv(tmp_path / "clicks.csv", ["image", "click_x", "click_y", "label"], rows)
    return ref, photos, clicks


def _features(path):
    return json.loads(path.read_text())["features"]


def test_folder_and_clicks_csv_give_one_layer_in_input_order_with_query_metadata(
    tmp_path, monkeypatch, capsys, stand_in
):
    ref, photos, clicks = _flight(tmp_path, 3, clicks_per_photo=2)
    out = tmp_path / "flight.geojson"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "batch", photos, "--clicks", clicks, "--ref", ref, "-o", out,
        "--search-radius", RADIUS, "--json", "-q",
    )  # fmt: skip
    assert code == 0
    features = _features(out)
    assert [f["properties"]["label"] for f in features] == ["obj0-0", "obj0-1", "obj1-0", "obj1-1", "obj2-0", "obj2-1"]
    first = features[0]["properties"]
    assert first["image"] == "DJI_0000.JPG" and first["query_id"] == "DJI_0000.JPG#2"
    assert (first["click_x"], first["click_y"]) == (10.0, 20.0)
    assert (first["lon"], first["lat"]) == pytest.approx(_lonlat(120, 90), abs=1e-7)
    assert first["bbox_px"] == pytest.approx(OBJECT, abs=1.0)  # grid tiles sit at fractional pixel offsets
    summary = json.loads(stdout)
    assert summary["queries"] == summary["done"] == 6 and summary["failed"] == 0
    # Two clicks per photo search the same circle on one tile grid: each tile is encoded once.
    assert summary["tiles_encoded"] == stand_in.encoded and summary["cache_hits"] >= summary["tiles_encoded"]


def test_manifest_rows_carry_their_own_positions(tmp_path, monkeypatch, capsys, stand_in):
    ref = _raster(tmp_path / "ref.tif")
    write_photo(tmp_path / "a.jpg")  # no EXIF position: the manifest's is used
    lon, lat = _lonlat(190, 150)
    manifest = _csv(
        tmp_path / "manifest.csv",
        ["Image", "Click X", "Click Y", "Latitude", "Longitude", "height_above_takeoff(feet)", "label"],
        [["a.jpg", 5, 6, lat, lon, 100, "car"]],
    )
    out = tmp_path / "flight.geojson"
    code, _, _ = run_cli(monkeypatch, capsys, "batch", manifest, "--ref", ref, "-o", out, "--search-radius", RADIUS, "-q")
    assert code == 0
    (feature,) = _features(out)
    props = feature["properties"]
    assert (props["lon"], props["lat"]) == pytest.approx((lon, lat), abs=1e-9)
    assert props["rel_alt"] == pytest.approx(30.48) and props["label"] == "car"


def test_srt_frames_get_their_entries_positions(tmp_path, monkeypatch, capsys, stand_in):
    srt = os.path.join(DATA, "air2s.srt")
    entries = read_srt(srt)
    start = entries[0].pose
    # A lon/lat raster of ~0.2 m pixels centred on the first fix.
    transform = from_origin(start.lon - 200 * 2.5e-6, start.lat + 150 * 2e-6, 2.5e-6, 2e-6)
    ref = _raster(tmp_path / "ref.tif", crs="EPSG:4326", transform=transform)
    frames = tmp_path / "frames"
    frames.mkdir()
    for number in (1, 2, 5):
        write_photo(frames / f"frame_{number:04d}.jpg")
    clicks = _csv(
        tmp_path / "clicks.csv", ["image", "click_x", "click_y"], [["frame_0005.jpg", 1, 2], ["frame_0001.jpg", 3, 4]]
    )
    out = tmp_path / "flight.geojson"
    code, _, _ = run_cli(
        monkeypatch, capsys, "batch", frames, "--srt", srt, "--clicks", clicks, "--ref", ref, "-o", out,
        "--search-radius", RADIUS, "-q",
    )  # fmt: skip
    assert code == 0
    props = [f["properties"] for f in _features(out)]
    assert [p["image"] for p in props] == ["frame_0005.jpg", "frame_0001.jpg"]
    assert (props[0]["lat"], props[0]["lon"]) == (entries[4].pose.lat, entries[4].pose.lon)
    assert props[1]["time"] == "2022-08-07T13:40:40.774808"


def test_a_failed_query_is_recorded_and_the_run_goes_on_with_exit_1(tmp_path, monkeypatch, capsys, stand_in):
    ref, photos, clicks = _flight(tmp_path, 3)
    rows = list(csv.reader(open(clicks)))
    rows[2][1] = "500"  # off the 80-pixel-wide photo
    rows.append(["missing.jpg", 1, 1, "gone"])
    _csv(clicks, rows[0], rows[1:])
    out = tmp_path / "flight.geojson"
    code, _, err = run_cli(
        monkeypatch, capsys, "batch", photos, "--clicks", clicks, "--ref", ref, "-o", out, "--search-radius", RADIUS
    )
    assert code == 1 and "2 of 4 queries failed" in err
    assert [f["properties"]["label"] for f in _features(out)] == ["obj0-0", "obj2-0"]
    errors = list(csv.DictReader(open(tmp_path / "flight.errors.csv")))
    assert [e["row"] for e in errors] == [f"{clicks}:3", f"{clicks}:5"]
    assert "outside photo" in errors[0]["reason"] and "missing.jpg" in errors[1]["reason"]


def test_disk_cache_makes_a_second_run_encode_nothing(tmp_path, monkeypatch, capsys, stand_in):
    ref, photos, clicks = _flight(tmp_path, 4)
    args = ["batch", photos, "--clicks", clicks, "--ref", ref, "--search-radius", RADIUS,
            "--cache-dir", tmp_path / "cache", "--json", "-q"]  # fmt: skip
    code, first, _ = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "one.geojson")
    assert code == 0 and json.loads(first)["tiles_encoded"] > 0
    code, second, _ = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "two.geojson")
    assert code == 0 and json.loads(second)["tiles_encoded"] == 0
    assert _features(tmp_path / "two.geojson") == _features(tmp_path / "one.geojson")


def test_grid_tiles_of_overlapping_areas_coincide_and_cover_each_area():
    plan = dict(raster_size=(1000, 800), gsd_m=(0.5, 0.5), model_gsd_m=1.0, tile_size=TILE)
    first = plan_grid_tiles(Window(100.5, 90.25, 300, 200), **plan)
    second = plan_grid_tiles(Window(250, 150, 300, 200), **plan)
    # The cache keys tiles by window: the tiles both areas need must be the very same windows.
    by_index = {(t.row, t.col): t.window for t in first}
    common = [t for t in second if (t.row, t.col) in by_index]
    assert common and all(by_index[t.row, t.col] == t.window for t in common)
    for area, tiles in ((Window(100.5, 90.25, 300, 200), first), (Window(250, 150, 300, 200), second)):
        assert min(t.window.col_off for t in tiles) <= area.col_off
        assert max(t.window.col_off + t.window.width for t in tiles) >= area.col_off + area.width
        assert min(t.window.row_off for t in tiles) <= area.row_off
        assert max(t.window.row_off + t.window.height for t in tiles) >= area.row_off + area.height


def test_tile_cache_memory_stays_within_its_byte_budget_dropping_the_least_recently_used():
    cache = TileCache(max_bytes=3 * 1040)  # three tiles of 256 float32 + a 4 x 4 bool mask
    for key in "abcd":
        cache[key] = EncodedTile(torch.zeros(256), np.ones((4, 4), bool))
        if key == "c":
            assert cache.get("a") is not None  # a is now the most recently used
    assert set(cache) == {"a", "c", "d"} and cache.get("b") is None
    assert (cache.stores, cache.hits) == (4, 1)


def _smgeo(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "smgeo_cli", *map(str, args)], env=env, **kwargs)


def _journal_lines(path):
    return path.read_text().count("\n") if path.is_file() else 0


def test_killed_batch_resumes_with_every_query_exactly_once(tmp_path, weights):
    ref, photos, clicks = _flight(tmp_path, 12, clicks_per_photo=2)
    out = tmp_path / "flight.geojson"
    common = ["batch", photos, "--clicks", clicks, "--ref", ref, "-o", out,
              "--weights", weights, "--device", "cpu", "-q"]  # fmt: skip
    process = _smgeo(*common, "--no-gps", stderr=subprocess.PIPE)
    journal = journal_path(out)
    deadline = time.monotonic() + 60
    while _journal_lines(journal) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 3 <= _journal_lines(journal) < 24 and not out.exists(), "the batch was not killed mid-run"
    resumed = _smgeo(*common, "--no-gps", "--resume", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    assert summary["resumed"] >= 3 and summary["resumed"] + summary["done"] == 24
    info = pyogrio.read_info(out)
    assert info["features"] == 24
    ids = [f["properties"]["query_id"] for f in _features(out)]
    assert ids == [f"DJI_{i // 2:04d}.JPG#{i + 2}" for i in range(24)]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_torchrun_processes_give_the_features_of_one(tmp_path, weights):
    ref, photos, clicks = _flight(tmp_path, 5)
    common = ["batch", photos, "--clicks", clicks, "--ref", ref, "--weights", weights, "--device", "cpu",
              "--search-radius", RADIUS, "--top-k", "2", "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run",
                "--nproc_per_node", "2", "--master_port", str(_free_port())]  # fmt: skip
    two = subprocess.run([*launcher, "-m", "smgeo_cli", *map(str, common), "-o", tmp_path / "two.geojson"],
                         env=env, capture_output=True, timeout=120)  # fmt: skip
    assert two.returncode == 0, two.stderr.decode()[-2000:]
    assert journal_path(tmp_path / "two.geojson", 1).is_file()
    one = _smgeo(*common, "-o", tmp_path / "one.geojson", stderr=subprocess.PIPE)
    assert one.wait(timeout=120) == 0, one.stderr.read().decode()
    assert _features(tmp_path / "two.geojson") == _features(tmp_path / "one.geojson")
    assert len(_features(tmp_path / "one.geojson")) == 10
