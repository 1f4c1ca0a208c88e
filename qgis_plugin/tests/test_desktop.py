"""The plugin in the QGIS desktop application under Xvfb, as a user runs it.

QGIS's own Python (not the tests' environment) with the plugin installed
from its zip into a fresh profile and smgeo found through the provider's
environment setting; the algorithm is started from its dialog's Run button,
so it runs in QGIS's background task and its output is loaded onto the map.
Unlike headless QGIS, the desktop application has loaded OpenGL, Mesa's
LLVM with it, and torch's triton crashed it on import until the plugin kept
triton out.

With SMGEO_SCREENSHOTS=docs/img the run's screenshots are kept there (the README's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import DARK_ROOF, EXAMPLES, smgeo_locate_json


def test_the_qgis_desktop_runs_locate_from_its_dialog(tmp_path: Path, plugins_folder: Path) -> None:
    from qgis.PyQt.QtGui import QImage

    profile = tmp_path / "profiles" / "default"
    shutil.copytree(plugins_folder / "smgeo_qgis", profile / "python" / "plugins" / "smgeo_qgis")
    # Enabled, as the Plugin Manager leaves a plugin installed from a zip.
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nsmgeo_qgis=true\n")
    out = tmp_path / "out"
    out.mkdir()
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SMGEO_OUT": str(out),
        "SMGEO_EXAMPLES": str(EXAMPLES),
        "SMGEO_ENVIRONMENT": sys.prefix,
        "GDAL_PAM_ENABLED": "NO",
    }
    qgis = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "qgis", "--profiles-path", str(tmp_path),
         "--nologo", "--noversioncheck", "--code", str(Path(__file__).with_name("in_qgis_desktop.py"))],
        env=environment, capture_output=True, text=True, timeout=600,
    )
    assert (out / "result.json").is_file(), f"QGIS exited {qgis.returncode} without a result: {qgis.stderr[-3000:]}"
    result = json.loads((out / "result.json").read_text())
    assert "error" not in result, result["error"]
    assert result["successful"], result["log"]
    assert result["layers"] == [{"crs": "EPSG:32631", "features": 1}]
    # auto loaded the model (and torch with it); the matcher's fit answered, as on the command line.
    assert "1 hit(s) by match" in result["log"]
    assert result["summary"]["hits"] == smgeo_locate_json(*DARK_ROOF, "auto")["hits"]
    for name in ("qgis_locate_dialog.png", "qgis_locate_result.png"):
        assert QImage(str(out / name)).width() >= 900
        if os.environ.get("SMGEO_SCREENSHOTS"):
            shutil.copy(out / name, Path(os.environ["SMGEO_SCREENSHOTS"]) / name)
