"""Run "Locate clicked object" in QGIS's own Python, smgeo found only through the provider's environment setting.

    python3 -s locate_in_plain_qgis.py PLUGINS_FOLDER OUTPUT [ENVIRONMENT]

Prints one JSON line: {"hits": [...]} (the summary's hits) or {"error": "..."}.
Started by test_processing.py as a separate process, since a process that
has imported smgeo cannot show what happens without it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

plugins, output, environment = (*sys.argv[1:3], sys.argv[3] if len(sys.argv) > 3 else None)
sys.path.insert(0, plugins)
from qgis.core import QgsApplication, QgsProcessingException  # noqa: E402

app = QgsApplication([], False)
app.initQgis()
sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
import processing  # noqa: E402
import qgis.utils  # noqa: E402
from processing.core.Processing import Processing  # noqa: E402
from processing.core.ProcessingConfig import ProcessingConfig  # noqa: E402

Processing.initialize()
assert qgis.utils.loadPlugin("smgeo_qgis") and qgis.utils.startProcessingPlugin("smgeo_qgis")
from smgeo_qgis.environment import ENVIRONMENT_SETTING  # noqa: E402

if environment is not None:
    ProcessingConfig.setSettingValue(ENVIRONMENT_SETTING, environment)
examples = Path(__file__).resolve().parents[2] / "examples" / "data"
try:
    results = processing.run(
        "smgeo:locate",
        {
            "PHOTO": str(examples / "dark_roof_building.jpg"),
            "CLICK_X": 311.0,
            "CLICK_Y": 230.7,
            "RASTER": str(examples / "pan1.tif"),
            "METHOD": "match",
            "OUTPUT": output,
        },
    )
    print(json.dumps({"hits": json.loads(results["SUMMARY"])["hits"]}))
except QgsProcessingException as err:
    print(json.dumps({"error": str(err)}))
