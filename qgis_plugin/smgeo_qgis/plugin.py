"""The QGIS plugin object: it registers the smgeo Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import SmgeoProvider


class SmgeoPlugin:
    def __init__(self) -> None:
        self.provider: SmgeoProvider | None = None

    def initProcessing(self) -> None:
        # Also called alone, without initGui, where QGIS runs Processing only (qgis_process).
        self.provider = SmgeoProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        QgsApplication.processingRegistry().removeProvider(self.provider)
