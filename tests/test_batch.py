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
from raster_factory import UTM_33N, UTM_TRANSFORM, write_bomb_png, write_geotiff, write_photo
from smgeo_cli.batch import TileCache, build_queries, journal_path, run_batch, run_settings
from smgeo_cli.commands import batch_cmd
from smgeo_cli.geo.coords import pixel_to_lonlat
from smgeo_cli.geo.srt import read_srt
from smgeo_cli.geo.tiling import plan_grid_tiles
from smgeo_cli.locate import EncodedTile, SearchArea
from smgeo_cli.matching.detector import MatchDetector
from stand_ins import TILE, BrightBoxDetector

DATA = os.path.join(os.path.dirname(__file__), "data", "flightlog")

PHOTO_SIZE = (80, 60)  # width, height
OBJECT = (180, 140, 200, 160)  # bright box on the raster, full-raster pixels
RADIUS = "40"  # metres: a few tiles around each photo


@pytest.fixture
def stand_in(monkeypatch):
    detector = BrightBoxDetector()
    monkeypatch.setattr(batch_cmd, "method_detectors", lambda method, weights, device, features, headings: [detector])
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


def _journal_records(path):
    """Queries the journal holds (its first line holds the run's settings)."""
    return path.read_text().count('"id": ') if path.is_file() else 0


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_batch_resumes_with_every_query_exactly_once(tmp_path, weights, how):
    ref, photos, clicks = _flight(tmp_path, 12, clicks_per_photo=2)
    out = tmp_path / "flight.geojson"
    common = ["batch", photos, "--clicks", clicks, "--ref", ref, "-o", out,
              "--weights", weights, "--device", "cpu", "-q"]  # fmt: skip
    process = _smgeo(*common, "--no-gps", stderr=subprocess.PIPE)
    journal = journal_path(out)
    deadline = time.monotonic() + 60
    while _journal_records(journal) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(how)
    _, err = process.communicate(timeout=60)
    assert 3 <= _journal_records(journal) < 24 and not out.exists(), "the batch was not killed mid-run"
    if how == signal.SIGINT:  # Ctrl-C: a word and the shell's code for it, no traceback
        assert process.returncode == 130 and err.decode().strip() == "smgeo: interrupted"
    # Nothing half-written; a SIGKILL'd run leaves its lock file, which holds no lock and the next run removes.
    left = {"clicks.csv", "flight.geojson.journal", "photos", "ref.tif"}
    left |= {"flight.geojson.lock"} if how == signal.SIGKILL else set()
    assert {p.name for p in tmp_path.iterdir()} == left
    resumed = _smgeo(*common, "--no-gps", "--resume", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    assert summary["resumed"] >= 3 and summary["resumed"] + summary["done"] == 24
    info = pyogrio.read_info(out)
    assert info["features"] == 24
    ids = [f["properties"]["query_id"] for f in _features(out)]
    assert ids == [f"DJI_{i // 2:04d}.JPG#{i + 2}" for i in range(24)]
    assert not (tmp_path / "flight.geojson.lock").exists()


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


def _batch(monkeypatch, capsys, photos, clicks, ref, out, *extra):
    return run_cli(
        monkeypatch, capsys, "batch", photos, "--clicks", clicks, "--ref", ref, "-o", out,
        "--search-radius", RADIUS, *extra,
    )  # fmt: skip


def test_run_batch_as_a_library_reports_tile_progress_and_resumes_with_another_callback(tmp_path):
    """The QGIS plugin runs batches this way: its progress callback is not one of the run's settings."""
    ref, photos, clicks = _flight(tmp_path, 2)
    queries = build_queries(photos, clicks)
    options = dict(cache=TileCache(), search=SearchArea(use_gps=False))
    progress = []
    first = run_batch(queries, ref, [BrightBoxDetector()], tmp_path / "flight", on_progress=lambda done, total: progress.append(done), **options)
    assert (first.done, first.failed) == (2, 0) and progress
    again = run_batch(queries, ref, [BrightBoxDetector()], tmp_path / "flight", on_progress=None, **options)
    assert (again.done, again.resumed) == (0, 2)


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, monkeypatch, capsys, stand_in):
    ref, photos, clicks = _flight(tmp_path, 2)
    out = tmp_path / "flight.geojson"
    assert _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q")[0] == 0
    before = out.read_bytes()
    code, _, err = _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q", "--resume", "--top-k", "2")
    assert code == 2 and "top_k was 1, now 2" in err and "without --resume" in err
    other = _raster(tmp_path / "other.tif")
    code, _, err = _batch(monkeypatch, capsys, photos, clicks, other, out, "-q", "--resume")
    assert code == 2 and "ref was" in err and "other.tif" in err
    assert out.read_bytes() == before
    # Without --resume the run starts over with the new settings.
    assert _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q", "--top-k", "2")[0] == 0


def test_the_learned_matchers_headings_are_a_run_setting_and_sifts_key_is_unchanged(tmp_path):
    """A resume with other --headings would mix answers found two ways; tiles are shared all the same."""
    ref = _raster(tmp_path / "ref.tif")
    xfeat_4, xfeat_8 = MatchDetector("xfeat", headings=4), MatchDetector("xfeat", headings=8)
    assert xfeat_4.cache_key == xfeat_8.cache_key  # the tiles' features do not depend on the headings
    four, eight = (run_settings(ref, [MatchDetector("sift"), d], {}) for d in (xfeat_4, xfeat_8))
    assert four["methods"][0] == eight["methods"][0] == MatchDetector("sift").cache_key
    assert four["methods"][1] != eight["methods"][1] and "headings8" in eight["methods"][1]


def test_resume_runs_again_the_rows_that_changed(tmp_path, monkeypatch, capsys, stand_in):
    ref, photos, clicks = _flight(tmp_path, 3)
    out = tmp_path / "flight.geojson"
    assert _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q")[0] == 0
    rows = list(csv.reader(open(clicks)))
    rows[2][1], rows[2][3] = "33", "moved"  # the second photo's click and label, edited after the run
    _csv(clicks, rows[0], rows[1:])
    code, stdout, err = _batch(monkeypatch, capsys, photos, clicks, ref, out, "--resume", "--json")
    summary = json.loads(stdout)
    assert code == 0 and (summary["resumed"], summary["changed"], summary["done"]) == (2, 1, 1)
    assert "1 queries changed since the journal was written" in err
    props = [f["properties"] for f in _features(out)]
    assert [p["label"] for p in props] == ["obj0-0", "moved", "obj2-0"] and props[1]["click_x"] == 33.0


def test_failed_queries_run_again_with_retry_failed(tmp_path, monkeypatch, capsys, stand_in):
    ref, photos, clicks = _flight(tmp_path, 3)
    late = photos / "DJI_0001.JPG"
    late.rename(tmp_path / "late.jpg")  # not copied yet when the batch first ran
    out = tmp_path / "flight.geojson"
    code, _, err = _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q")
    assert code == 1 and "1 of 3 queries failed" in err
    (tmp_path / "late.jpg").rename(late)
    code, stdout, _ = _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q", "--resume", "--json")
    assert code == 1 and json.loads(stdout)["resumed"] == 3  # a failure is an answer until asked to retry
    code, stdout, _ = _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q", "--resume", "--retry-failed", "--json")
    summary = json.loads(stdout)
    assert code == 0 and (summary["resumed"], summary["done"], summary["failed_total"]) == (2, 1, 0)
    assert [f["properties"]["label"] for f in _features(out)] == ["obj0-0", "obj1-0", "obj2-0"]
    assert not (tmp_path / "flight.errors.csv").exists()


class _FailingDetector(BrightBoxDetector):
    """Fails the second and third photos the way libraries fail: out of memory, and an OpenCV error."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode_query(self, photo_rgb, click_xy, **hints):
        self.calls += 1
        if self.calls == 2:
            raise MemoryError()
        if self.calls == 3:
            import cv2

            raise cv2.error("OpenCV(5.0.0) matrix.cpp:123: error: (-215:Assertion failed) in function 'create'")
        return super().encode_query(photo_rgb, click_xy, **hints)


def test_any_failure_of_one_query_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    detector = _FailingDetector()
    monkeypatch.setattr(batch_cmd, "method_detectors", lambda method, weights, device, features, headings: [detector])
    ref, photos, clicks = _flight(tmp_path, 4)
    write_bomb_png(photos / "DJI_0003.JPG")  # a decompression bomb where the last photo was
    out = tmp_path / "flight.geojson"
    code, _, err = _batch(monkeypatch, capsys, photos, clicks, ref, out)
    assert code == 1 and "3 of 4 queries failed" in err and "Traceback" not in err
    reasons = [row["reason"] for row in csv.DictReader(open(tmp_path / "flight.errors.csv"))]
    assert reasons[0] == "MemoryError" and reasons[1].startswith("error: OpenCV(5.0.0)")
    assert "DJI_0003.JPG" in reasons[2] and "implausible size" in reasons[2]
    journal = [json.loads(line) for line in journal_path(out).read_text().splitlines()]
    assert "Traceback" in journal[2]["traceback"]  # kept for a bug report
    # A resume does not trip over the bomb again.
    assert _batch(monkeypatch, capsys, photos, clicks, ref, out, "--resume", "-q")[0] == 1


def test_a_damaged_raster_fails_each_query_with_its_reason_and_quiet_still_says_so(tmp_path, monkeypatch, capsys,
                                                                                    stand_in):  # fmt: skip
    _, photos, clicks = _flight(tmp_path, 2)
    data = np.random.default_rng(0).integers(0, 255, (3, 300, 400), dtype=np.uint8)
    whole = write_geotiff(tmp_path / "whole.tif", data, tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    ref = tmp_path / "cut.tif"
    ref.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a COG cut short by a failed download
    out = tmp_path / "flight.geojson"
    code, stdout, err = _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q")
    assert code == 1 and stdout == "" and err.strip() == f"all 2 queries failed: see {tmp_path / 'flight.errors.csv'}"
    reasons = [row["reason"] for row in csv.DictReader(open(tmp_path / "flight.errors.csv"))]
    assert all("cut.tif: cannot read its pixels" in reason and "truncated" in reason for reason in reasons)


def test_bad_csv_rows_and_srt_entries_fail_alone(tmp_path, monkeypatch, capsys, stand_in):
    ref, photos, clicks = _flight(tmp_path, 3)
    rows = list(csv.reader(open(clicks)))
    rows[2][1] = "ten"
    _csv(clicks, rows[0], rows[1:])
    out = tmp_path / "flight.geojson"
    code, _, err = _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q")
    assert code == 1 and "1 of 3 queries failed" in err
    (error,) = csv.DictReader(open(tmp_path / "flight.errors.csv"))
    assert error["row"] == f"{clicks}:3" and "click_x is 'ten', not a number" in error["reason"]
    assert [f["properties"]["label"] for f in _features(out)] == ["obj0-0", "obj2-0"]


def test_an_impossible_srt_position_fails_only_its_frames(tmp_path, monkeypatch, capsys, stand_in):
    ref = _raster(tmp_path / "ref.tif")
    lon, lat = _lonlat(190, 150)
    srt = tmp_path / "flight.srt"
    srt.write_text(
        f"1\n00:00:00,000 --> 00:00:01,000\n[latitude: {lat}] [longitude: {lon}] [rel_alt: 0.0]\n\n"
        "2\n00:00:01,000 --> 00:00:02,000\n[latitude: 95.0] [longitude: 3.0] [rel_alt: 0.0]\n\n"
    )
    frames = tmp_path / "frames"
    frames.mkdir()
    for number in (1, 2):
        write_photo(frames / f"frame_{number:04d}.jpg")
    clicks = _csv(tmp_path / "clicks.csv", ["image", "click_x", "click_y"], [["frame_0001.jpg", 1, 2], ["frame_0002.jpg", 3, 4]])
    code, _, err = run_cli(monkeypatch, capsys, "batch", frames, "--srt", srt, "--clicks", clicks, "--ref", ref,
                           "-o", tmp_path / "f.geojson", "--search-radius", RADIUS, "-q")  # fmt: skip
    assert code == 1 and "1 of 2 queries failed" in err
    (error,) = csv.DictReader(open(tmp_path / "f.errors.csv"))
    assert error["image"].endswith("frame_0002.jpg") and "entry 2: latitude 95.0 is outside" in error["reason"]


def test_a_second_batch_on_the_same_output_is_refused(tmp_path, monkeypatch, capsys, stand_in):
    from smgeo_cli.io import output_lock

    ref, photos, clicks = _flight(tmp_path, 1)
    out = tmp_path / "flight.geojson"
    with output_lock(out):  # as a run in another terminal holds it
        code, _, err = _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q")
    assert code == 2 and "being written by another smgeo run" in err and not out.exists()
    assert _batch(monkeypatch, capsys, photos, clicks, ref, out, "-q")[0] == 0


def test_a_damaged_cache_entry_is_encoded_again_and_an_upgrade_reuses_nothing(tmp_path, monkeypatch, capsys,
                                                                             stand_in):  # fmt: skip
    ref, photos, clicks = _flight(tmp_path, 2)
    cache = tmp_path / "cache"
    args = ("--cache-dir", cache, "--json", "-q")
    code, first, _ = _batch(monkeypatch, capsys, photos, clicks, ref, tmp_path / "one.geojson", *args)
    entries = sorted(cache.rglob("*.npz"))
    assert code == 0 and len(entries) == json.loads(first)["tiles_encoded"] > 1
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # a copy cut short
    code, second, _ = _batch(monkeypatch, capsys, photos, clicks, ref, tmp_path / "two.geojson", *args)
    assert code == 0 and json.loads(second)["tiles_encoded"] == 1
    assert _features(tmp_path / "two.geojson") == _features(tmp_path / "one.geojson")
    monkeypatch.setattr("smgeo_cli.batch.TILE_FORMAT_VERSION", 10**6)  # tiles are read differently from now on
    code, third, _ = _batch(monkeypatch, capsys, photos, clicks, ref, tmp_path / "three.geojson", *args)
    assert code == 0 and json.loads(third)["tiles_encoded"] == len(entries)
