"""Pairs mined from real overlapping drone photos: loadable, boxes in tiles, exact homographies, splits by photo."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from rasterio.transform import from_origin

from conftest import run_cli
from raster_factory import write_geotiff, write_photo
from smgeo_cli.data import mine
from smgeo_cli.data.cvogl import QUERY_DIR, SATELLITE_DIR, CVOGLDataset, load_records, read_homographies
from smgeo_cli.data.geometry import apply_homography, translation, warp_square
from smgeo_cli.data.mine import (
    CATEGORY,
    deal_photos,
    mine_photos,
    mine_reference,
    neighbour_pairs,
    photo_positions,
)
from smgeo_cli.errors import UsageError
from smgeo_cli.geo.coords import GEOD
from smgeo_cli.images import read_rgb

DATA = Path(__file__).parent / "data" / "mine"
# Three consecutive nadir photos of one flight line, 500 x 281 px.
PHOTOS = sorted(DATA.glob("brighton_DJI_*_500px.jpg"))
QUERY, REF = 64, 160
OPTIONS = {"val_frac": 0.0, "test_frac": 0.0, "query_size": QUERY, "ref_size": REF}


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    root = tmp_path_factory.mktemp("mined")
    return root, mine_photos(PHOTOS, root, 8, seed=3, **OPTIONS)


def test_mined_pairs_load_and_boxes_lie_in_their_tiles(mined):
    root, summary = mined
    assert summary.counts["train"] == 8 and summary.tried == 3
    assert summary.weak == 3 - len(summary.inliers) and min(summary.inliers) >= 30
    records = load_records(root, "train")
    assert len(records) == 8
    assert sum(r.category == CATEGORY for r in records) >= 6
    loaded = CVOGLDataset(root, "train", QUERY, REF)
    assert loaded[0]["ref"].shape == (3, REF, REF) and np.isfinite(loaded[0]["homography"].numpy()).all()
    for record in records:
        assert read_rgb(root / SATELLITE_DIR / record.sat_name).shape == (REF, REF, 3)
        x1, y1, x2, y2 = record.box_xyxy
        assert 0 <= x1 < x2 <= REF and 0 <= y1 < y2 <= REF
        # The query comes from another photo than the tile.
        assert record.sat_name.split("_500px")[0] not in record.query_name


def test_click_maps_back_into_the_box(mined):
    root, _ = mined
    homographies = read_homographies(root, "train")
    for record in load_records(root, "train"):
        assert 0 <= record.click_xy[0] < QUERY and 0 <= record.click_xy[1] < QUERY
        x, y = apply_homography(np.linalg.inv(homographies[record.query_name]), np.array([record.click_xy]))[0]
        x1, y1, x2, y2 = record.box_xyxy
        assert x1 <= x <= x2 and y1 <= y <= y2


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _alignment(tile: np.ndarray, query: np.ndarray, homography: np.ndarray) -> float:
    """NCC of the query with the tile warped into it, over the query pixels the tile covers (grey, lightly blurred)."""
    tile, query = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) for image in (tile, query))
    grey = [cv2.GaussianBlur(image, (0, 0), 1.0) for image in (tile, query)]
    warped = warp_square(grey[0], homography, QUERY, cv2.INTER_LINEAR)
    to_cv = translation(-0.5, -0.5) @ homography @ translation(0.5, 0.5)
    inside = cv2.warpPerspective(np.ones((REF, REF), np.uint8), to_cv, (QUERY, QUERY), flags=cv2.INTER_NEAREST) > 0
    return _ncc(warped[inside], grey[1][inside])


def test_homography_aligns_tile_with_query(mined):
    """Warped through its homography the tile looks like the query; moved 4 tile pixels, much less so."""
    root, _ = mined
    homographies = read_homographies(root, "train")
    for record in load_records(root, "train"):
        tile = read_rgb(root / SATELLITE_DIR / record.sat_name)
        query = read_rgb(root / QUERY_DIR / record.query_name)
        homography = homographies[record.query_name]
        aligned = _alignment(tile, query, homography)
        shifted = _alignment(tile, query, homography @ translation(4.0, 4.0))
        assert aligned > 0.9 and shifted < aligned - 0.05, (record, aligned, shifted)


def _read_dataset(root: Path) -> tuple[list, dict, dict]:
    images = {p.relative_to(root): p.read_bytes() for p in root.rglob("*.jpg")}
    homographies = {k: v.tolist() for k, v in read_homographies(root, "train").items()}
    return load_records(root, "train"), homographies, images


def test_same_seed_same_pairs(mined, tmp_path):
    root, _ = mined
    mine_photos(PHOTOS, tmp_path / "again", 8, seed=3, **OPTIONS)
    mine_photos(PHOTOS, tmp_path / "other", 8, seed=4, **OPTIONS)
    assert _read_dataset(tmp_path / "again") == _read_dataset(root)
    assert _read_dataset(tmp_path / "other")[0] != _read_dataset(root)[0]


def test_pairs_are_the_same_when_images_are_reloaded_instead_of_kept(mined, tmp_path, monkeypatch):
    """A long flight keeps only a few working photos in memory; the pairs cut must not depend on it."""
    root, _ = mined
    monkeypatch.setattr(mine, "IMAGES_IN_MEMORY", 1)  # every switch of photo reads one again
    mine_photos(PHOTOS, tmp_path / "reloaded", 8, seed=3, **OPTIONS)
    assert _read_dataset(tmp_path / "reloaded") == _read_dataset(root)


def test_photos_of_the_same_name_in_two_folders_keep_their_own_tiles(tmp_path):
    """Flights kept a folder each, numbered by the camera from DJI_0001: no photo's tiles may overwrite another's."""
    flights = [
        tmp_path / "flight1" / "DJI_0001.jpg",
        tmp_path / "flight1" / "DJI_0002.jpg",
        tmp_path / "flight2" / "DJI_0001.jpg",
    ]
    for path, photo in zip(flights, PHOTOS):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(photo.read_bytes())
    labels = mine.photo_labels(flights)
    assert len(set(labels)) == 3 and labels[1] == "DJI_0002" and mine.photo_labels(PHOTOS) == [p.stem for p in PHOTOS]
    root = tmp_path / "out"
    mine_photos(flights, root, 8, seed=3, **OPTIONS)
    homographies = read_homographies(root, "train")
    records = load_records(root, "train")
    assert {record.sat_name.rsplit("_", 3)[0] for record in records} == set(labels)
    for record in records:  # each saved tile is still the one its query was cut against (an overwritten one: < 0.1)
        tile = read_rgb(root / SATELLITE_DIR / record.sat_name)
        query = read_rgb(root / QUERY_DIR / record.query_name)
        assert _alignment(tile, query, homographies[record.query_name]) > 0.9, record


def test_progress_counts_photos_described_then_pairs_matched(tmp_path):
    described, matched = [], []
    mine_photos(
        PHOTOS, tmp_path / "out", 2, on_photo=lambda *a: described.append(a), on_match=lambda *a: matched.append(a),
        **OPTIONS,
    )
    assert described == [(1, 3), (2, 3), (3, 3)] and matched == [(1, 3), (2, 3), (3, 3)]


def test_splits_take_runs_of_consecutive_photos():
    rng = np.random.default_rng(0)
    splits = deal_photos(18, {"train": 80, "val": 10, "test": 10}, rng, min_run=2)
    assert splits.count("val") == 2 and splits.count("test") == 2
    for split in ("val", "test"):
        first = splits.index(split)
        assert splits[first : first + 2] == [split, split]
    with pytest.raises(UsageError, match="too few"):
        deal_photos(3, {"train": 8, "val": 1, "test": 1}, rng, min_run=2)


def test_photos_pair_with_their_nearest_shots_in_order_or_by_gps(tmp_path):
    in_order = np.arange(5, dtype=float)[:, None]
    assert neighbour_pairs(in_order, 1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    two = neighbour_pairs(in_order, 2)
    assert {(i, i + 1) for i in range(4)} <= set(two) and max(b - a for a, b in two) == 2
    assert len(neighbour_pairs(in_order, 0)) == len(neighbour_pairs(in_order, 4)) == 10  # every pair

    # Given out of flight order: the first and last shots were taken 20 m apart, the middle one 500 m away.
    lat, lon = 46.8426, -91.9945
    metres_east = (0.0, 500.0, 20.0)
    paths = []
    for i, east in enumerate(metres_east):
        photo_lon, photo_lat, _ = GEOD.fwd(lon, lat, 90.0, east)
        paths.append(write_photo(tmp_path / f"{i}.jpg", latlon=(photo_lat, photo_lon)))
    positions = photo_positions(paths)
    assert np.allclose(positions[:, 0], metres_east, atol=0.5) and np.allclose(positions[:, 1], 0.0, atol=0.5)
    assert neighbour_pairs(positions, 1) == [(0, 2), (1, 2)]
    # One photo without GPS: the order given stands in for all.
    paths[1] = write_photo(tmp_path / "no_gps.jpg")
    assert photo_positions(paths).tolist() == [[0.0], [1.0], [2.0]]


CLI_ARGS = ["--val-frac", "0", "--test-frac", "0", "--ref-size", str(REF), "--query-size", str(QUERY), "-q"]


def test_cli_matches_each_photo_with_its_neighbours_only(tmp_path, monkeypatch, capsys):
    args = ["--n", "2", *CLI_ARGS]
    code, out, _ = run_cli(monkeypatch, capsys, "mine", *PHOTOS, "--out", tmp_path / "a", *args)
    assert code == 0 and "3 image pairs tried" in out
    one_each_side = ["--neighbours", "1", "--out", tmp_path / "b"]
    code, out, _ = run_cli(monkeypatch, capsys, "mine", *PHOTOS, *one_each_side, *args)
    assert code == 0 and "2 image pairs tried" in out  # first-second and second-third: the ends are not tried


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["mine", "--neighbours", "1", "--ref", "ortho.tif"], "--neighbours goes with photos alone"),
        (["mine", "--gsd", "0.1"], "--gsd sets the tile GSD of --ref"),
        (["synth", "--neighbours", "1"], "options of `smgeo mine`"),
        (["synth", "--photo-scale", "2"], "options of `smgeo mine`"),
    ],
)
def test_mining_options_out_of_place_are_usage_errors(tmp_path, monkeypatch, capsys, args, words):
    code, _, err = run_cli(monkeypatch, capsys, *args, *PHOTOS, "--out", tmp_path / "out", "--n", "2", *CLI_ARGS)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before any folder is made


def test_reference_raster_mode_names_tiles_by_ground_and_splits_by_photo(tmp_path):
    """The middle photo as a 0.1 m orthophoto; the other two are matched against it, one photo per split."""
    middle = read_rgb(PHOTOS[1])
    origin = (500_000.0, 4_983_000.0)
    raster = write_geotiff(tmp_path / "ortho.tif", np.moveaxis(middle, -1, 0), transform=from_origin(*origin, 0.1, 0.1))
    photos = [PHOTOS[0], PHOTOS[2]]
    summary = mine_reference(
        photos, raster, tmp_path / "out", 4, val_frac=0.5, test_frac=0.0, query_size=QUERY, ref_size=REF, gsd_m=0.1
    )
    assert summary.counts == {"train": 2, "val": 2, "test": 0} and summary.weak == 0
    seen = {}
    for split in ("train", "val"):
        for record in load_records(tmp_path / "out", split):
            seen.setdefault(split, set()).add(record.query_name.split("_", 3)[3])
            easting, northing, extent, epsg = map(float, record.sat_name.removesuffix(".jpg").split("_"))
            assert (extent, epsg) == (REF * 0.1, 32633)
            # The name's centre puts the tile on the raster where its pixels came from.
            col, row = round((easting - origin[0]) / 0.1 - REF / 2), round((origin[1] - northing) / 0.1 - REF / 2)
            tile = read_rgb(tmp_path / "out" / SATELLITE_DIR / record.sat_name).astype(int)
            assert np.abs(tile - middle[row : row + REF, col : col + REF]).mean() < 6
    assert len(seen["train"]) == len(seen["val"]) == 1 and not seen["train"] & seen["val"]


def test_cli_mines_pairs_and_reports_fits(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "mine", *PHOTOS[:2], "--out", tmp_path / "out", "--n", "2", *CLI_ARGS)
    assert code == 0 and not err
    assert "train: 2 pairs" in out and "1 image pairs tried, 0 rejected" in out
    assert len(load_records(tmp_path / "out", "train")) == 2


def test_synth_mine_still_mines_the_same_pairs_with_a_deprecation_note(tmp_path, monkeypatch, capsys):
    args = [*PHOTOS[:2], "--n", "2", *CLI_ARGS]
    code, out, err = run_cli(monkeypatch, capsys, "synth", "--mine", *args, "--out", tmp_path / "old")
    assert code == 0 and "1 image pairs tried, 0 rejected" in out
    assert len(err.strip().splitlines()) == 1 and "synth --mine is now `smgeo mine`" in err
    assert run_cli(monkeypatch, capsys, "mine", *args, "--out", tmp_path / "new")[0] == 0
    assert _read_dataset(tmp_path / "old") == _read_dataset(tmp_path / "new")


def test_photos_that_do_not_overlap_fail_with_one_line(tmp_path, monkeypatch, capsys):
    photo = read_rgb(PHOTOS[0])
    left, right = tmp_path / "left.jpg", tmp_path / "right.jpg"
    cv2.imwrite(str(left), cv2.cvtColor(photo[:, :160], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(right), cv2.cvtColor(photo[:, -160:], cv2.COLOR_RGB2BGR))
    code, _, err = run_cli(
        monkeypatch, capsys, "mine", left, right, "--out", tmp_path / "out", "--n", "2",
        "--val-frac", "0", "--test-frac", "0", "--ref-size", "128", "--query-size", "32", "-q",
    )
    assert code == 6
    assert len(err.strip().splitlines()) == 1 and "strong fit" in err and "overlapping photos" in err


def test_one_photo_or_an_unreadable_one_is_a_usage_or_input_error(tmp_path, monkeypatch, capsys):
    args = ["--out", tmp_path / "out", "--n", "2", "--val-frac", "0", "--test-frac", "0", "-q"]
    code, _, err = run_cli(monkeypatch, capsys, "mine", PHOTOS[0], *args)
    assert code == 2 and "at least 2" in err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code, _, err = run_cli(monkeypatch, capsys, "mine", PHOTOS[0], broken, *args)
    assert code == 3 and "broken.jpg" in err and len(err.strip().splitlines()) == 1
