"""Locate clicked object: ``smgeo locate`` as a Processing algorithm."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from .algorithm import Progress, SmgeoAlgorithm, smgeo_errors


class LocateAlgorithm(SmgeoAlgorithm):
    PHOTO = "PHOTO"
    CLICK_X = "CLICK_X"
    CLICK_Y = "CLICK_Y"
    EXTENT = "EXTENT"
    PREVIEW = "PREVIEW"
    SUMMARY = "SUMMARY"

    def name(self) -> str:
        return "locate"

    def displayName(self) -> str:
        return "Locate clicked object"

    def shortHelpString(self) -> str:
        return (
            "Finds, on a georeferenced raster, the object clicked on a drone photo and writes its footprint: "
            "the same hits, with the same properties, as <i>smgeo locate</i> (score, rank, query, click_x, "
            "click_y, bbox_px, ref, ref_crs, center_lon, center_lat, area_m2, model), in the raster's CRS.<br>"
            "The click is the pixel (x, y) in the photo as displayed, from its top-left corner.<br>"
            "Where to search: the extent when one is given; else a circle of the search radius around the "
            "ground point the photo's GPS and gimbal metadata give; else the whole raster.<br>"
            "The preview PNG shows the photo with the click beside the raster around the best hit.<br>"
            "The log ends with the summary <i>smgeo locate --json</i> prints."
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.PHOTO, "Drone photo", fileFilter="Images (*.jpg *.jpeg *.png *.tif *.tiff *.JPG *.JPEG)"
            )
        )
        for name, axis in ((self.CLICK_X, "x (column)"), (self.CLICK_Y, "y (row)")):
            self.addParameter(
                QgsProcessingParameterNumber(
                    name, f"Click {axis} in photo pixels", type=QgsProcessingParameterNumber.Double, minValue=0.0
                )
            )
        self.add_search_parameters()
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, "Search extent (empty: around the photo's GPS)", optional=True)
        )
        self.add_hits_output("Hits")
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.PREVIEW,
                "Preview: the photo with the click beside the best hit",
                fileFilter="PNG files (*.png)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary (as smgeo locate --json)"))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        options = self.library_options(parameters, context)
        from smgeo_cli.locate import locate_first_found
        from smgeo_cli.preview import write_preview

        extent = self.parameterAsExtent(parameters, self.EXTENT, context)
        if not extent.isNull():
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            box = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
            bbox_crs = (crs.authid() or crs.toWkt()) if crs.isValid() else None
            options["search"] = dataclasses.replace(options["search"], bbox=box, bbox_crs=bbox_crs)
        click = (
            self.parameterAsDouble(parameters, self.CLICK_X, context),
            self.parameterAsDouble(parameters, self.CLICK_Y, context),
        )
        raster = self.raster_path(parameters, context)
        preview = self.parameterAsFileOutput(parameters, self.PREVIEW, context)
        with smgeo_errors():
            result = locate_first_found(
                self.parameterAsFile(parameters, self.PHOTO, context),
                click,
                raster,
                options.pop("detectors"),
                on_progress=Progress(feedback).tiles,
                **options,
            )
            if preview:
                write_preview(Path(preview), result, options["bands"])
        crs = self.parameterAsRasterLayer(parameters, self.RASTER, context).crs()
        output = self.write_hits(parameters, context, [(f.ring_xy, f.properties) for f in result.features], crs)
        summary = json.dumps(result.summary())
        feedback.pushInfo(f"{len(result.features)} hit(s) by {result.model}")
        feedback.pushInfo(summary)
        return {self.OUTPUT: output, self.PREVIEW: preview or None, self.SUMMARY: summary}
