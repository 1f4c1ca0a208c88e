"""Locate a flight: ``smgeo batch`` as a Processing algorithm."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .algorithm import Progress, SmgeoAlgorithm, smgeo_errors

# The columns of the errors table, as in the <output>.errors.csv smgeo batch writes.
ERROR_COLUMNS = ("row", "image", "reason")


class FlightAlgorithm(SmgeoAlgorithm):
    PHOTOS = "PHOTOS"
    CLICKS = "CLICKS"
    MANIFEST = "MANIFEST"
    ERRORS = "ERRORS"

    def name(self) -> str:
        return "flight"

    def displayName(self) -> str:
        return "Locate a flight"

    def shortHelpString(self) -> str:
        return (
            "Locates every click of a flight on one raster, as <i>smgeo batch</i> does, into one layer in the "
            "raster's CRS: one feature per hit, with the properties of <i>Locate clicked object</i> plus image, "
            "label, query_id and the photo's position where known.<br>"
            "Give either a folder of photos with a clicks CSV (image,click_x,click_y[,label]) or a manifest CSV "
            "that also carries each photo's position (image,click_x,click_y,lat,lon[,rel_alt,yaw,pitch,label]).<br>"
            "A click that cannot be located (a click off its photo, an unreadable photo, a position off the "
            "raster) goes to the errors table with its CSV row and the reason, and the others go on.<br>"
            "Cancelling stops after the tiles in hand and writes nothing."
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.PHOTOS, "Photo folder (with a clicks CSV)", behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CLICKS, "Clicks CSV: image,click_x,click_y[,label]", extension="csv", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.MANIFEST, "Or a manifest CSV: image,click_x,click_y,lat,lon,...", extension="csv", optional=True
            )
        )
        self.add_search_parameters()
        self.add_hits_output("Hits")
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.ERRORS, "Failed clicks", QgsProcessing.TypeVector, optional=True, createByDefault=True
            )
        )

    def checkParameterValues(self, parameters: dict[str, Any], context: QgsProcessingContext) -> tuple[bool, str]:
        photos = self.parameterAsFile(parameters, self.PHOTOS, context)
        clicks = self.parameterAsFile(parameters, self.CLICKS, context)
        manifest = self.parameterAsFile(parameters, self.MANIFEST, context)
        if manifest and (photos or clicks):
            return False, "give a manifest CSV, or a photo folder with a clicks CSV, not both"
        if not manifest and not (photos and clicks):
            return False, "give a photo folder and its clicks CSV, or a manifest CSV"
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        options = self.library_options(parameters, context)
        from smgeo_cli.batch import TileCache, build_queries, run_batch

        manifest = self.parameterAsFile(parameters, self.MANIFEST, context)
        clicks = self.parameterAsFile(parameters, self.CLICKS, context)
        with smgeo_errors():
            if manifest:
                queries = build_queries(manifest)
            else:
                queries = build_queries(self.parameterAsFile(parameters, self.PHOTOS, context), clicks)
        if not queries:
            raise QgsProcessingException(f"{manifest or clicks}: no clicks (the CSV has no data rows)")
        raster = self.raster_path(parameters, context)
        progress = Progress(feedback, len(queries))

        records = []

        def query_done(query: Any, record: dict) -> None:
            records.append(record)
            outcome = f"{len(record['features'])} hit(s)" if record["ok"] else f"failed: {record['reason']}"
            feedback.pushInfo(f"{progress.finished + 1}/{len(queries)} {query.photo.name}: {outcome}")
            progress.query_done()

        # run_batch journals each click to a file beside its output; nothing else is written there.
        with smgeo_errors(), tempfile.TemporaryDirectory(prefix="smgeo-") as folder:
            run_batch(
                queries,
                raster,
                options.pop("detectors"),
                Path(folder) / "flight",
                cache=TileCache(),
                on_query=query_done,
                on_progress=progress.tiles,
                **options,
            )
        # One process takes the clicks in input order, so the records are in the order smgeo batch writes them.
        hits = [(hit["ring_xy"], hit["properties"]) for record in records if record["ok"] for hit in record["features"]]
        crs = self.parameterAsRasterLayer(parameters, self.RASTER, context).crs()
        output = self.write_hits(parameters, context, hits, crs)
        failed = [record for record in records if not record["ok"]]
        fields = QgsFields()
        for column in ERROR_COLUMNS:
            fields.append(QgsField(column, QVariant.String))
        sink, errors = self.parameterAsSink(parameters, self.ERRORS, context, fields, QgsWkbTypes.NoGeometry)
        if sink is not None:
            for record in failed:
                feature = QgsFeature(fields)
                feature.setAttributes([record[column] for column in ERROR_COLUMNS])
                sink.addFeature(feature, QgsFeatureSink.FastInsert)
        if failed:
            feedback.reportError(f"{len(failed)} of {len(queries)} clicks failed: see the errors table")
        return {self.OUTPUT: output, self.ERRORS: errors}
