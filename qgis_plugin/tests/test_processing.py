"""The smgeo provider in real QGIS: both algorithms through processing.run on the example raster and photos.

The matcher (``--method match``) is used throughout: it needs no model, and
on the example it finds the dark-roofed building and the lawn. Every output
is compared with what the smgeo command line writes for the same inputs, run
from the same environment.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import DARK_ROOF, EXAMPLES, QGIS_PYTHON, RASTER, smgeo_cli, smgeo_locate_json

pytestmark = pytest.mark.usefixtures("qgis_app")


def truth_boxes() -> dict[str, tuple[float, float, float, float]]:
    """The true box of each example photo's object, in the raster's CRS (minx, miny, maxx, maxy)."""
    with open(EXAMPLES / "truth.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {row["image"]: tuple(float(row[k]) for k in ("minx", "miny", "maxx", "maxy")) for row in rows}


def run(algorithm: str, parameters: dict, feedback=None) -> dict:
    import processing

    return processing.run(f"smgeo:{algorithm}", parameters, feedback=feedback)


def dark_roof(**parameters) -> dict:
    """Locate's parameters for the example the matcher finds, with ``parameters`` added or replaced."""
    photo, x, y = DARK_ROOF
    return {
        "PHOTO": str(EXAMPLES / photo), "CLICK_X": x, "CLICK_Y": y, "RASTER": str(RASTER), "METHOD": "match",
        **parameters,
    }  # fmt: skip


def read_layer(path: Path):
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(str(path), path.stem, "ogr")
    assert layer.isValid(), path
    return layer


def rows(layer) -> list[dict]:
    """Each feature's attributes by name (the GeoPackage's fid left out) and its vertices' x, y, x, y, ..."""
    names = [field.name() for field in layer.fields() if field.name() != "fid"]
    return [
        {
            "attributes": {name: feature[name] for name in names},
            "vertices": [v for point in feature.geometry().vertices() for v in (point.x(), point.y())],
        }
        for feature in layer.getFeatures()
    ]


def assert_same_features(ours: list[dict], theirs: list[dict]) -> None:
    assert [row["attributes"] for row in ours] == [row["attributes"] for row in theirs]
    for mine, cli in zip(ours, theirs):
        assert mine["vertices"] == pytest.approx(cli["vertices"], abs=1e-6)


def iou(geometry, box: tuple[float, float, float, float]) -> float:
    from qgis.core import QgsGeometry, QgsRectangle

    truth = QgsGeometry.fromRect(QgsRectangle(*box))
    return geometry.intersection(truth).area() / geometry.combine(truth).area()


class Recorder:
    """A QgsProcessingFeedback that keeps the progress it was given and its log lines."""

    def __init__(self, cancel_at_progress: float | None = None) -> None:
        from qgis.core import QgsProcessingFeedback

        self.feedback = QgsProcessingFeedback()
        self.progress: list[float] = []
        self.feedback.progressChanged.connect(self._progress)
        self.cancel_at_progress = cancel_at_progress

    def _progress(self, value: float) -> None:
        self.progress.append(value)
        if self.cancel_at_progress is not None and value >= self.cancel_at_progress:
            self.feedback.cancel()

    def log(self) -> str:
        return self.feedback.textLog()


def test_the_zip_installs_the_provider_with_both_algorithms(plugin_zip: Path, plugins_folder: Path) -> None:
    from qgis.core import QgsApplication

    import smgeo_cli
    import smgeo_qgis

    with zipfile.ZipFile(plugin_zip) as archive:
        names = archive.namelist()
        metadata = archive.read("smgeo_qgis/metadata.txt").decode()
    assert "smgeo_qgis/__init__.py" in names and not any("__pycache__" in name for name in names)
    assert "hasProcessingProvider=yes" in metadata.splitlines()
    assert f"version={smgeo_cli.__version__}" in metadata.splitlines()
    # QGIS loaded the plugin from the unpacked zip, not from the repository.
    assert Path(smgeo_qgis.__file__).parent == plugins_folder / "smgeo_qgis"
    provider = QgsApplication.processingRegistry().providerById("smgeo")
    assert sorted(alg.id() for alg in provider.algorithms()) == ["smgeo:flight", "smgeo:locate"]


def test_locate_finds_the_dark_roof_as_smgeo_locate_does(tmp_path: Path) -> None:
    from qgis.PyQt.QtGui import QImage

    photo, x, y = DARK_ROOF
    recorder = Recorder()
    results = run(
        "locate",
        dark_roof(OUTPUT=str(tmp_path / "hits.gpkg"), PREVIEW=str(tmp_path / "hits.png")),
        recorder.feedback,
    )
    cli = smgeo_cli(
        "locate", str(EXAMPLES / photo), "--click", f"{x},{y}", "--ref", str(RASTER), "--method", "match",
        "-o", str(tmp_path / "cli.gpkg"), "--json", "-q",
    )
    assert cli.returncode == 0, cli.stderr
    layer = read_layer(Path(results["OUTPUT"]))
    assert layer.crs().authid() == "EPSG:32631"
    assert layer.featureCount() == 1
    hit = next(layer.getFeatures())
    assert iou(hit.geometry(), truth_boxes()[photo]) > 0.5
    assert json.loads(results["SUMMARY"])["hits"] == json.loads(cli.stdout)["hits"]
    assert_same_features(rows(layer), rows(read_layer(tmp_path / "cli.gpkg")))
    assert recorder.progress and recorder.progress[-1] == 100
    preview = QImage(results["PREVIEW"])
    assert preview.height() == 512 and preview.width() > 1024


def test_locate_searches_the_extent_given_in_another_crs_as_smgeo_locate_bbox_does(tmp_path: Path) -> None:
    photo, x, y = DARK_ROOF
    west, east, south, north = 4.3572, 4.3588, 51.8695, 51.8705  # about 110 x 110 m around the dark roof
    results = run(
        "locate",
        dark_roof(EXTENT=f"{west},{east},{south},{north} [EPSG:4326]", OUTPUT=str(tmp_path / "hits.gpkg")),
    )
    cli = smgeo_cli(
        "locate", str(EXAMPLES / photo), "--click", f"{x},{y}", "--ref", str(RASTER), "--method", "match",
        "--bbox", f"{west},{south},{east},{north}", "--bbox-crs", "EPSG:4326", "--json", "-q",
    )
    ours, theirs = json.loads(results["SUMMARY"]), json.loads(cli.stdout)
    assert ours["search"] == theirs["search"] and ours["search"]["kind"] == "bbox"
    # A window of the raster, not all of it (600 x 600 pixels).
    assert ours["search"]["window_px"][2] < 300
    assert ours["hits"] == theirs["hits"] and len(ours["hits"]) == 1


def test_locate_reports_a_click_off_the_photo_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    photo = DARK_ROOF[0]
    with pytest.raises(QgsProcessingException) as raised:
        run("locate", dark_roof(CLICK_X=5000.0, OUTPUT=str(tmp_path / "a.gpkg"), PREVIEW=str(tmp_path / "a.png")))
    message = str(raised.value)
    assert "\n" not in message and "outside photo" in message and photo in message
    assert list(tmp_path.iterdir()) == []


def flight_clicks(tmp_path: Path) -> Path:
    """The example's clicks plus one off its photo (CSV line 6), which must fail alone."""
    clicks = tmp_path / "clicks.csv"
    text = (EXAMPLES / "clicks.csv").read_text()
    clicks.write_text(text + "lawn.jpg,900.0,10.0,off the photo\n")
    return clicks


def test_flight_writes_the_layer_and_errors_smgeo_batch_writes(tmp_path: Path) -> None:
    from qgis.core import QgsProject, QgsRasterLayer

    clicks = flight_clicks(tmp_path)
    raster = QgsRasterLayer(str(RASTER), "pan1")
    QgsProject.instance().addMapLayer(raster)
    recorder = Recorder()
    try:
        results = run(
            "flight",
            {
                "PHOTOS": str(EXAMPLES),
                "CLICKS": str(clicks),
                "RASTER": raster,
                "METHOD": "match",
                "OUTPUT": str(tmp_path / "flight.gpkg"),
                "ERRORS": "TEMPORARY_OUTPUT",
            },
            recorder.feedback,
        )
    finally:
        QgsProject.instance().removeMapLayer(raster.id())
    cli = smgeo_cli(
        "batch", str(EXAMPLES), "--clicks", str(clicks), "--ref", str(RASTER), "--method", "match",
        "-o", str(tmp_path / "cli.gpkg"), "-q",
    )
    assert cli.returncode == 1, cli.stderr  # one click failed
    layer = read_layer(Path(results["OUTPUT"]))
    assert layer.crs().authid() == "EPSG:32631"
    # The matcher fits all four photos (SIFT three, XFeat the white roof SIFT misses); the fifth click fails.
    found = rows(layer)
    images = ["roundabout.jpg", "dark_roof_building.jpg", "white_roof_building.jpg", "lawn.jpg"]
    assert [row["attributes"]["image"] for row in found] == images
    assert_same_features(found, rows(read_layer(tmp_path / "cli.gpkg")))
    truth = truth_boxes()
    for feature in layer.getFeatures():
        if feature["image"] in ("dark_roof_building.jpg", "lawn.jpg"):
            assert iou(feature.geometry(), truth[feature["image"]]) > 0.5
    errors = results["ERRORS"]
    with open(tmp_path / "cli.errors.csv", newline="") as handle:
        expected = [dict(row) for row in csv.DictReader(handle)]
    columns = ("row", "image", "reason")
    assert [{name: feature[name] for name in columns} for feature in errors.getFeatures()] == expected
    assert expected[0]["row"] == f"{clicks}:6" and "outside photo" in expected[0]["reason"]
    assert recorder.progress == sorted(recorder.progress) and recorder.progress[-1] == 100
    assert "5/5 lawn.jpg: failed" in recorder.log()


def test_cancelling_a_flight_stops_it_and_leaves_no_output(tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    out = tmp_path / "out"
    out.mkdir()
    recorder = Recorder(cancel_at_progress=0.1)
    with pytest.raises(QgsProcessingException, match="canceled: nothing was written"):
        run(
            "flight",
            {
                "PHOTOS": str(EXAMPLES),
                "CLICKS": str(flight_clicks(tmp_path)),
                "RASTER": str(RASTER),
                "METHOD": "match",
                "OUTPUT": str(out / "flight.gpkg"),
                "ERRORS": str(out / "errors.csv"),
            },
            recorder.feedback,
        )
    # Stopped within its first click (a fifth of the run): no click was reported done, nothing was written.
    assert "1/5" not in recorder.log() and max(recorder.progress) <= 20
    assert list(out.iterdir()) == []


def test_plain_qgis_says_how_to_install_smgeo_then_uses_the_environment(tmp_path: Path, plugins_folder: Path) -> None:
    """QGIS's own Python, without smgeo: the one-line install command; with the environment named, the hit."""
    script = Path(__file__).with_name("locate_in_plain_qgis.py")

    def locate_with(*environment: Path) -> dict:
        done = subprocess.run(
            [QGIS_PYTHON, "-s", str(script), str(plugins_folder), str(tmp_path / "hits.gpkg"), *map(str, environment)],
            capture_output=True,
            text=True,
            env={
                "QT_QPA_PLATFORM": "offscreen",
                "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path),
                "PATH": "/usr/bin:/bin",
                "GDAL_PAM_ENABLED": "NO",
            },
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    missing = locate_with()["error"]
    numpy = subprocess.run(
        [QGIS_PYTHON, "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert "\n" not in missing and missing.startswith("smgeo is not installed for QGIS's Python")
    # The default environment lives in the QGIS profile's folder.
    environment = tmp_path / "profiles" / "default" / "smgeo-env"
    assert f'-m venv "{environment}" && "{environment}/bin/python" -m pip install "numpy=={numpy}"' in missing
    assert missing.endswith('"smgeo-cli"  and run this algorithm again')
    assert not (tmp_path / "hits.gpkg").exists()

    assert locate_with(Path(sys.prefix))["hits"] == smgeo_locate_json(*DARK_ROOF, "match")["hits"]
