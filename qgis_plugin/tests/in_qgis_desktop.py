"""Run inside the QGIS desktop application (``qgis --code``) by test_desktop.py: the plugin as a user meets it.

Opens "Locate clicked object" with the example's dark-roof click filled in,
grabs the dialog, presses Run (the algorithm runs in QGIS's background task,
its output is loaded onto the map), shows the hit over the raster, grabs
QGIS's window, writes what happened to result.json and quits. Its settings
come from the environment, since QGIS runs the file without arguments or a
``__file__``: SMGEO_OUT (the folder to write), SMGEO_EXAMPLES (the example
data) and SMGEO_ENVIRONMENT (the Python environment holding smgeo).
"""

import json
import os
import traceback
from pathlib import Path

import processing
from processing.core.ProcessingConfig import ProcessingConfig
from qgis.core import (
    QgsContrastEnhancement,
    QgsFillSymbol,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtGui import QImage
from qgis.utils import iface

from smgeo_qgis.environment import ENVIRONMENT_SETTING

OUT = Path(os.environ["SMGEO_OUT"])
EXAMPLES = Path(os.environ["SMGEO_EXAMPLES"])
PARAMETERS = {
    "PHOTO": str(EXAMPLES / "dark_roof_building.jpg"),
    "CLICK_X": 311.0,
    "CLICK_Y": 230.7,
    "RASTER": str(EXAMPLES / "pan1.tif"),
    "METHOD": "auto",
    "OUTPUT": str(OUT / "hits.gpkg"),
}
result: dict = {}


def grab(widget, name: str) -> None:
    # 256 colours dither the imagery a little and keep the README's PNGs small.
    widget.grab().toImage().convertToFormat(QImage.Format_Indexed8).save(str(OUT / name))


def stop(**outcome) -> None:
    result.update(outcome)
    (OUT / "result.json").write_text(json.dumps(result))
    # Not QGIS's own quit: with pyproj's wheel loaded, QGIS 3.22 on Debian crashes in PROJ's teardown as it
    # quits (README, In QGIS), and its crash handler can hang; what this run checks is done.
    os._exit(0)


def guarded(step):
    """Run ``step``; on an error, record its traceback and quit rather than wait on an error dialog."""

    def run(*args):
        try:
            step(*args)
        except Exception:
            stop(error=traceback.format_exc())

    return run


@guarded
def press_run() -> None:
    grab(dialog, "qgis_locate_dialog.png")
    dialog.algorithmFinished.connect(finished)
    dialog.runAlgorithm()


@guarded
def finished(successful: bool, outputs: dict) -> None:
    result.update(successful=successful, log=dialog.feedback.textLog() if dialog.feedback else "")
    if not successful:
        stop()
        return
    result["summary"] = json.loads(outputs["SUMMARY"])
    hits = [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsVectorLayer)]
    result["layers"] = [{"crs": layer.crs().authid(), "features": layer.featureCount()} for layer in hits]
    for layer in hits:
        layer.renderer().setSymbol(
            QgsFillSymbol.createSimple({"color": "255,0,0,50", "outline_color": "red", "outline_width": "0.8"})
        )
        layer.triggerRepaint()
    iface.mapCanvas().setExtent(raster.extent())
    iface.mapCanvas().refresh()
    QTimer.singleShot(3000, guarded(lambda: (grab(iface.mainWindow(), "qgis_locate_result.png"), stop())))


ProcessingConfig.setSettingValue(ENVIRONMENT_SETTING, os.environ["SMGEO_ENVIRONMENT"])
iface.mainWindow().resize(1000, 640)
raster = QgsRasterLayer(PARAMETERS["RASTER"], "pan1.tif")
raster.setContrastEnhancement(
    QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut
)
QgsProject.instance().addMapLayer(raster)
dialog = processing.createAlgorithmDialog("smgeo:locate", PARAMETERS)
dialog.resize(900, 600)
dialog.show()
QTimer.singleShot(2000, press_run)
