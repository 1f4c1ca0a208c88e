"""Real QGIS for the plugin's tests: headless, in a throw-away profile, the plugin installed from its zip.

scripts/test_qgis.sh runs these tests on .venv-qgis's Python: a virtual
environment made from QGIS's Python with smgeo installed (QGIS's numpy
pinned), as the README tells users to make one. QGIS's own packages (qgis,
PyQt5, the Processing plugin) are appended to the path, behind smgeo's, the
order the plugin itself gives an smgeo environment and QGIS's packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "data"
RASTER = EXAMPLES / "pan1.tif"
# The example the matcher finds: photo, click x, click y.
DARK_ROOF = ("dark_roof_building.jpg", 311.0, 230.7)
# The interpreter QGIS embeds (Debian: the system Python).
QGIS_PYTHON = os.environ.get("QGIS_PYTHON", "/usr/bin/python3")


def smgeo_cli(*args: str) -> subprocess.CompletedProcess:
    """The smgeo command line of the environment the tests run in."""
    return subprocess.run([sys.executable, "-m", "smgeo_cli", *args], capture_output=True, text=True)


def smgeo_locate_json(photo: str, x: float, y: float, method: str) -> dict:
    """What ``smgeo locate --json`` prints for a click on an example photo, searched for on the example raster."""
    done = smgeo_cli(
        "locate", str(EXAMPLES / photo), "--click", f"{x},{y}", "--ref", str(RASTER), "--method", method, "--json", "-q"
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _qgis_packages() -> str:
    """The folder holding QGIS's Python package ``qgis``, as QGIS's Python finds it."""
    script = "import os, qgis; print(os.path.dirname(os.path.dirname(qgis.__file__)))"
    return subprocess.run([QGIS_PYTHON, "-c", script], check=True, capture_output=True, text=True).stdout.strip()


sys.path.append(_qgis_packages())
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# QGIS's GDAL would keep raster statistics in pan1.tif.aux.xml beside the example.
os.environ["GDAL_PAM_ENABLED"] = "NO"


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip scripts/build_qgis_plugin.sh builds, as a user downloads it."""
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_qgis_plugin.sh"), str(out)], check=True, capture_output=True, text=True
    )
    return Path(build.stdout.strip())


@pytest.fixture(scope="session")
def plugins_folder(tmp_path_factory: pytest.TempPathFactory, plugin_zip: Path) -> Path:
    """A profile's plugins folder with the zip unpacked into it, as QGIS's "Install from ZIP" does."""
    folder = tmp_path_factory.mktemp("plugins")
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(folder)
    return folder


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory: pytest.TempPathFactory, plugins_folder: Path) -> Iterator[object]:
    """QGIS started headless with Processing and the smgeo plugin loaded by QGIS's own plugin loader."""
    os.environ["QGIS_CUSTOM_CONFIG_PATH"] = str(tmp_path_factory.mktemp("qgis-config"))
    sys.path.insert(0, str(plugins_folder))
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    import qgis.utils
    from processing.core.Processing import Processing

    Processing.initialize()
    assert qgis.utils.loadPlugin("smgeo_qgis") and qgis.utils.startProcessingPlugin("smgeo_qgis")
    yield app
    app.exitQgis()
