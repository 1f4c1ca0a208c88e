"""The smgeo Processing provider: its algorithms and its one setting, the Python environment holding smgeo."""

from __future__ import annotations

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import QgsProcessingProvider

from .environment import ENVIRONMENT_SETTING, default_environment
from .flight_algorithm import FlightAlgorithm
from .locate_algorithm import LocateAlgorithm


class SmgeoProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "smgeo"

    def name(self) -> str:
        return "smgeo"

    def longName(self) -> str:
        return "smgeo: objects clicked on drone photos, located on georeferenced rasters"

    def load(self) -> bool:
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                ENVIRONMENT_SETTING,
                "Python environment with smgeo, made from QGIS's Python (used when QGIS's Python has no smgeo)",
                str(default_environment()),
                valuetype=Setting.FOLDER,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        ProcessingConfig.removeSetting(ENVIRONMENT_SETTING)

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(LocateAlgorithm())
        self.addAlgorithm(FlightAlgorithm())
