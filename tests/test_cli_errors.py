"""Bad input through the real command line: one line on stderr, the documented exit code, no traceback, no debris.

Every case runs `python -m smgeo_cli ...` in a subprocess, as a user would,
into an output folder that already holds the previous run's output: it must
come out byte for byte the same, with nothing beside it (no partial or
temporary file). The exit codes are the README's: 2 bad options, 3 missing or
unreadable file, 4 georeferencing, 5 weights that don't fit, 6 no valid data.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, tiny_config
from raster_factory import UTM_33N, UTM_TRANSFORM, write_bomb_png, write_geotiff, write_photo
from smgeo_cli.geo.coords import pixel_to_lonlat

PREVIOUS = '{"type": "FeatureCollection", "features": []}\n'


class _Payload:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _config_file(path: Path, **changes) -> Path:
    config = {**tiny_config().to_dict(), **changes}
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, weights):
    """Good and bad inputs, made once: the cases only read them."""
    root = tmp_path_factory.mktemp("inputs")
    data = np.full((3, 300, 400), 60, dtype=np.uint8)
    data[:, 100:140, 150:200] = 230
    ref = write_geotiff(root / "ref.tif", data)
    lon, lat = pixel_to_lonlat(UTM_33N, UTM_TRANSFORM, np.array([170.0]), np.array([120.0]))
    write_photo(root / "photo.jpg", latlon=(float(lat[0]), float(lon[0])))
    write_geotiff(root / "plain.tif", data, crs=None, transform=None)
    write_geotiff(root / "empty.tif", np.zeros((3, 300, 400), np.uint8), nodata=0)
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image\n")
    jpeg = (root / "photo.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    write_bomb_png(root / "bomb.png")
    (root / "cut.tif").write_bytes(ref.read_bytes()[:2000])
    (root / "folder.geojson").mkdir()
    photos = root / "photos"
    photos.mkdir()
    write_photo(photos / "a.jpg")
    (root / "clicks.csv").write_text("image,click_x,click_y\na.jpg,10,20\n")
    (root / "bad_header.csv").write_text("name,x,y\na.jpg,1,2\n")
    # Weights: another architecture's config beside the tiny weights, cut safetensors, a pickle.
    for name in ("other", "cut", "pickle"):
        (root / name).mkdir()
    _config_file(root / "other" / "config.json", embed_dim=32, fusion_dim=64)
    (root / "other" / "model.safetensors").write_bytes((weights / "model.safetensors").read_bytes())
    (root / "cut" / "config.json").write_text((weights / "config.json").read_text())
    (root / "cut" / "model.safetensors").write_bytes((weights / "model.safetensors").read_bytes()[:5000])
    (root / "pickle" / "config.json").write_text((weights / "config.json").read_text())
    (root / "pickle" / "model.safetensors").write_bytes(pickle.dumps(_Payload(str(root / "UNPICKLED"))))
    _config_file(root / "string_width.json", embed_dim="48")
    _config_file(root / "null_depths.json", depths=None)
    _config_file(root / "zero_ref.json", ref_size=0)
    _config_file(root / "list_name.json", name=["a"])
    (root / "broken.json").write_text("{ not json")
    (root / "not_a_folder").write_text("a file\n")
    return root


P = "{inputs}/photo.jpg"
R = "{inputs}/ref.tif"
O = "{out}/hit.geojson"
LOCATE = ["locate", P, "--click", "40,30", "--ref", R, "--method", "match", "-q"]
BATCH = ["batch", "{inputs}/photos", "--clicks", "{inputs}/clicks.csv", "--ref", R, "-o", O, "-q"]
TRAIN = ["train", "{inputs}/toy", "--out", "{out}/run", "-q"]

# (id, arguments, exit code, words the error line must hold)
CASES = [
    # --click
    ("click-one-number", ["locate", P, "--click", "5", "--ref", R, "-o", O], 2, "--click"),
    ("click-letters", ["locate", P, "--click", "a,b", "--ref", R, "-o", O], 2, "--click"),
    ("click-nan", ["locate", P, "--click", "nan,3", "--ref", R, "-o", O], 2, "--click"),
    ("click-overflow", ["locate", P, "--click", "1e309,2", "--ref", R, "-o", O], 2, "--click"),
    ("click-negative", [*LOCATE, "--click", "-5,3", "-o", O], 2, "outside photo"),
    ("click-outside", [*LOCATE, "--click", "80,10", "-o", O], 2, "outside photo"),
    # numeric options: not finite, out of range
    ("gsd-nan", [*LOCATE, "--gsd", "nan", "-o", O], 2, "--gsd"),
    ("gsd-inf", [*LOCATE, "--gsd", "inf", "-o", O], 2, "--gsd"),
    ("gsd-negative", [*LOCATE, "--gsd", "-1", "-o", O], 2, "--gsd"),
    ("gsd-upsampling-without-limit", [*LOCATE, "--gsd", "1e-6", "-o", O], 2, "--gsd"),
    ("too-many-tiles", [*LOCATE, "--no-gps", "--max-tiles", "1", "--gsd", "0.1", "-o", O], 2, "--max-tiles"),
    ("tile-overlap-one", [*LOCATE, "--tile-overlap", "1", "-o", O], 2, "--tile-overlap"),
    ("search-radius-nan", [*LOCATE, "--search-radius", "nan", "-o", O], 2, "--search-radius"),
    ("top-k-zero", [*LOCATE, "--top-k", "0", "-o", O], 2, "--top-k"),
    ("bands-two", [*LOCATE, "--bands", "1,2", "-o", O], 2, "--bands"),
    ("bands-missing", [*LOCATE, "--bands", "9", "-o", O], 2, "bands"),
    # --bbox
    ("bbox-nan", [*LOCATE, "--bbox", "nan,0,1,1", "-o", O], 2, "--bbox"),
    ("bbox-inverted", [*LOCATE, "--bbox", "500100,4982900,500000,4982800", "-o", O], 2, "min < max"),
    ("bbox-off-raster", [*LOCATE, "--bbox", "0,0,10,10", "-o", O], 4, "does not overlap"),
    ("bbox-crs-alone", [*LOCATE, "--bbox-crs", "EPSG:4326", "-o", O], 2, "--bbox-crs"),
    # outputs
    ("output-unknown-format", [*LOCATE, "-o", "{out}/hit.txt"], 2, "unknown format"),
    ("output-is-a-folder", [*LOCATE, "-o", "{inputs}/folder.geojson"], 3, "is a folder"),
    ("output-folder-missing", [*LOCATE, "-o", "{out}/missing/hit.geojson"], 3, "does not exist"),
    ("output-folder-read-only", [*LOCATE, "-o", "/proc/hit.geojson"], 3, "cannot write"),
    ("preview-not-png", [*LOCATE, "-o", O, "--preview", "{out}/p.jpg"], 2, "--preview"),
    # photos
    ("photo-missing", ["locate", "{inputs}/none.jpg", *LOCATE[2:], "-o", O], 3, "none.jpg"),
    ("photo-empty", ["locate", "{inputs}/empty.jpg", *LOCATE[2:], "-o", O], 3, "empty.jpg"),
    ("photo-truncated", ["locate", "{inputs}/cut.jpg", *LOCATE[2:], "-o", O], 3, "cut.jpg"),
    ("photo-not-an-image", ["locate", "{inputs}/notes.jpg", *LOCATE[2:], "-o", O], 3, "notes.jpg"),
    ("photo-decompression-bomb", ["locate", "{inputs}/bomb.png", *LOCATE[2:], "-o", O], 3, "bomb.png"),
    # rasters
    ("raster-missing", [*LOCATE, "--ref", "{inputs}/none.tif", "-o", O], 3, "none.tif"),
    ("raster-truncated", [*LOCATE, "--ref", "{inputs}/cut.tif", "-o", O], 3, "cut.tif"),
    ("raster-without-georeferencing", [*LOCATE, "--ref", "{inputs}/plain.tif", "-o", O], 4, "not georeferenced"),
    ("raster-all-nodata", [*LOCATE, "--no-gps", "--ref", "{inputs}/empty.tif", "-o", O], 6, "no valid pixels"),
    # weights
    ("weights-missing", [*LOCATE, "--method", "smgeo", "--weights", "{inputs}/none", "-o", O], 5, "none"),
    ("weights-of-another-config", [*LOCATE, "--method", "smgeo", "--weights", "{inputs}/other", "-o", O], 5, "fit"),
    ("weights-truncated", [*LOCATE, "--method", "smgeo", "--weights", "{inputs}/cut", "-o", O], 5, "fit"),
    ("weights-a-pickle", [*LOCATE, "--method", "smgeo", "--weights", "{inputs}/pickle", "-o", O], 5, "fit"),
    # batch
    ("batch-fps-nan", [*BATCH, "--srt", "{inputs}/x.srt", "--fps", "nan"], 2, "--fps"),
    ("batch-fps-zero", [*BATCH, "--srt", "{inputs}/x.srt", "--fps", "0"], 2, "--fps"),
    ("batch-retry-without-resume", [*BATCH, "--retry-failed"], 2, "--retry-failed"),
    ("batch-folder-without-clicks", ["batch", "{inputs}/photos", "--ref", R, "-o", O], 2, "--clicks"),
    ("batch-clicks-without-columns", [*BATCH, "--clicks", "{inputs}/bad_header.csv"], 3, "no column"),
    ("batch-output-is-a-folder", [*BATCH, "-o", "{inputs}/folder.geojson"], 3, "is a folder"),
    ("batch-output-read-only", [*BATCH, "-o", "/proc/flight.geojson"], 3, "cannot write"),
    ("batch-source-missing", ["batch", "{inputs}/nowhere", "--clicks", "{inputs}/clicks.csv", "--ref", R, "-o", O],
     3, "nowhere"),  # fmt: skip
    # train and configs
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], 2, "--lr"),
    ("train-lr-negative", [*TRAIN, "--lr", "-0.1"], 2, "--lr"),
    ("train-weight-decay-negative", [*TRAIN, "--weight-decay", "-1"], 2, "--weight-decay"),
    ("config-width-a-string", [*TRAIN, "--config", "{inputs}/string_width.json"], 2, "embed_dim='48'"),
    ("config-depths-null", [*TRAIN, "--config", "{inputs}/null_depths.json"], 2, "depths=None"),
    ("config-ref-size-zero", [*TRAIN, "--config", "{inputs}/zero_ref.json"], 2, "ref_size=0"),
    ("config-name-a-list", [*TRAIN, "--config", "{inputs}/list_name.json"], 2, "name=['a']"),
    ("config-not-json", [*TRAIN, "--config", "{inputs}/broken.json"], 3, "broken.json"),
    ("train-out-is-a-file", ["train", "{inputs}/toy", "--out", "{inputs}/not_a_folder", "-q"], 3, "is a file"),
    # eval, synth, toy-data, info
    ("eval-predictions-folder-missing", ["eval", "{inputs}/toy", "--predictions-out", "{out}/no/p.jsonl"], 3,
     "does not exist"),  # fmt: skip
    ("synth-val-frac-nan", ["synth", R, "--out", "{out}/pairs", "--n", "4", "--val-frac", "nan"], 2, "--val-frac"),
    ("synth-fractions-above-one", ["synth", R, "--out", "{out}/p", "--n", "4", "--val-frac", ".7", "--test-frac", ".6"],
     2, "at most 1"),  # fmt: skip
    ("synth-out-is-a-file", ["synth", R, "--out", "{inputs}/not_a_folder", "--n", "4"], 3, "is a file"),
    ("toy-data-split-with-slash", ["toy-data", "{out}/toy", "--splits", "a/b"], 2, "a/b"),
    ("info-nothing-to-describe", ["info"], 2, "--weights"),
    ("unknown-option", ["locate", "--frobnicate"], 2, "--frobnicate"),
]


def _smgeo(args, cwd=None, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("SMGEO_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "smgeo_cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gives_one_line_its_exit_code_and_leaves_the_previous_output(inputs, tmp_path, args, code, words):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("hit.geojson", "hit.txt"):
        (out / name).write_text(PREVIOUS)
    result = _smgeo([arg.format(inputs=inputs, out=out) for arg in args])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smgeo: error: "), result.stderr
    assert words in lines[0]
    assert result.returncode == code, result.stderr
    # The previous output is intact and nothing was left beside it (no partial, temporary or journal file).
    assert sorted(p.name for p in out.iterdir()) == ["hit.geojson", "hit.txt"]
    assert (out / "hit.geojson").read_text() == PREVIOUS
    assert not (inputs / "UNPICKLED").exists(), "a pickle offered as weights was unpickled"


def _crash(*args, **kwargs):
    raise RuntimeError("something smgeo did not expect\nover two lines")


@pytest.fixture
def broken_matcher(monkeypatch):
    """An unexpected error (a bug) inside the matcher."""
    monkeypatch.setattr("smgeo_cli.matching.MatchDetector.encode_query", _crash)


def test_a_bug_is_one_line_with_exit_70_and_the_way_to_get_the_traceback(inputs, monkeypatch, capsys, broken_matcher):
    monkeypatch.setenv("SMGEO_DEBUG", "0")
    code, _, err = run_cli(monkeypatch, capsys, *[a.format(inputs=inputs) for a in LOCATE])
    assert code == 70
    (line,) = err.strip().splitlines()
    assert line.startswith("smgeo: internal error: RuntimeError: something smgeo did not expect over two lines")
    assert "--debug" in line and "SMGEO_DEBUG=1" in line


@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_shows_the_traceback(inputs, monkeypatch, capsys, broken_matcher, how):
    args = [a.format(inputs=inputs) for a in LOCATE]
    # set either way, so that the value --debug puts in the environment is undone after the test
    monkeypatch.setenv("SMGEO_DEBUG", "0" if how == "option" else "1")
    if how == "option":
        args = ["--debug", *args]
    monkeypatch.setattr(sys, "argv", ["smgeo", *args])
    from smgeo_cli.cli import main

    with pytest.raises(RuntimeError, match="did not expect"):
        main()


def test_library_warnings_stay_hidden_and_smgeo_warnings_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMGEO_DEBUG", "0")
    import warnings

    from smgeo_cli.errors import SmgeoWarning

    def noisy(*args, **kwargs):
        warnings.warn("invalid value encountered in divide", RuntimeWarning)
        warnings.warn("3 samples are left out", SmgeoWarning)
        return {"train": 0}

    monkeypatch.setattr("smgeo_cli.data.toy.write_toy_dataset", noisy)
    code, out, err = run_cli(monkeypatch, capsys, "toy-data", tmp_path / "toy")
    assert code == 0
    assert err.strip().splitlines() == ["smgeo: warning: 3 samples are left out"]


def test_usage_errors_and_help_import_no_heavy_module():
    """`smgeo --help`, `smgeo COMMAND --help` and a usage error load neither torch, timm, OpenCV, rasterio nor kornia."""
    heavy = ("torch", "timm", "cv2", "rasterio", "kornia", "pyproj", "safetensors", "pyogrio")
    script = f"""
import sys
from smgeo_cli.cli import app
entry = sorted(m for m in {heavy!r} if m in sys.modules)
for args in (["--help"], ["locate", "--help"], ["batch", "--help"], ["train", "--help"], ["eval", "--help"],
             ["synth", "--help"], ["mine", "--help"], ["toy-data", "--help"], ["info", "--help"],
             ["locate", "p.jpg", "--click", "1", "--ref", "r.tif"], ["batch", "d", "--ref", "r", "-o", "o.x"],
             ["train", "d", "--out", "o", "--lr", "nan"]):
    try:
        app(args, standalone_mode=False)
    except Exception:
        pass
print(entry, sorted(m for m in {heavy!r} if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[] []", result.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(("how", "code", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_and_sigterm_are_said_and_leave_no_output(inputs, tmp_path, how, code, said):
    """Mid-run: the message Typer swallowed for Ctrl-C; SIGTERM unwinds too, so temporary files are removed."""
    big = write_geotiff(tmp_path / "big.tif", np.random.default_rng(0).integers(0, 255, (3, 4000, 4000), np.uint8))
    args = [a.format(inputs=inputs) for a in LOCATE] + ["--ref", big, "--no-gps", "-o", tmp_path / "hit.geojson"]
    process = subprocess.Popen(
        [sys.executable, "-m", "smgeo_cli", *map(str, args)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    time.sleep(8)  # past start-up, into the scan (tens of seconds of SIFT)
    process.send_signal(how)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code and err.strip().splitlines()[-1] == f"smgeo: {said}", err
    assert "Traceback" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]
