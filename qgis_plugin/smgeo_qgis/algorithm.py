"""What both smgeo algorithms share: the raster and method parameters, progress and cancel, errors, output.

The algorithms are a thin layer over the installed ``smgeo_cli`` library:
they turn QGIS parameters into its arguments, its progress callbacks into
QGIS's progress bar, its errors into QgsProcessingException, and its hits
into the algorithm's output layer, with the columns (and column types)
``smgeo locate -o hits.gpkg`` writes. smgeo is
imported when an algorithm runs, not when the provider loads, so the
algorithms are listed (and say how to install smgeo) where it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from processing.core.ProcessingConfig import ProcessingConfig
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .environment import ENVIRONMENT_SETTING, default_environment, require_smgeo

# smgeo's --method values; the library itself cannot be asked while the provider loads.
METHODS = ("auto", "smgeo", "match")
# QGIS field types of smgeo's property columns, by numpy dtype kind (bool, integer, float); the rest is text.
FIELD_TYPES = {"b": QVariant.Bool, "i": QVariant.LongLong, "f": QVariant.Double}


class Canceled(BaseException):
    """Raised from smgeo's progress callbacks when the user cancels.

    A BaseException, as KeyboardInterrupt is: ``smgeo batch`` records any
    Exception as that click's failure and goes on, but an interrupt ends the run.
    """


class Progress:
    """smgeo's progress callbacks driving QGIS's progress bar over ``steps`` queries; they raise Canceled on cancel."""

    def __init__(self, feedback: QgsProcessingFeedback, steps: int = 1) -> None:
        self.feedback = feedback
        self.steps = max(1, steps)
        self.finished = 0

    def check(self) -> None:
        if self.feedback.isCanceled():
            raise Canceled

    def tiles(self, done: int, total: int) -> None:
        """``on_progress(done, total)`` of :func:`smgeo_cli.locate.locate`: tiles of the current query."""
        self.feedback.setProgress(100.0 * (self.finished + done / max(1, total)) / self.steps)
        self.check()

    def query_done(self) -> None:
        self.finished += 1
        self.feedback.setProgress(100.0 * self.finished / self.steps)
        self.check()


class SmgeoAlgorithm(QgsProcessingAlgorithm):
    """Base of the smgeo algorithms: shared parameters and the bridge to the library."""

    RASTER = "RASTER"
    METHOD = "METHOD"
    SEARCH_RADIUS = "SEARCH_RADIUS"
    TOP_K = "TOP_K"
    BANDS = "BANDS"
    WEIGHTS = "WEIGHTS"
    VERIFY = "VERIFY"
    OUTPUT = "OUTPUT"

    def createInstance(self) -> SmgeoAlgorithm:
        return type(self)()

    def add_search_parameters(self) -> None:
        """The reference raster, the method and its options, as ``smgeo locate`` and ``smgeo batch`` take them."""
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.RASTER, "Reference raster (a loaded layer or a file)")
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.METHOD,
                "Method: auto (matcher, else model), smgeo (model) or match (matcher)",
                options=list(METHODS),
                defaultValue=METHODS[0],
                usesStaticStrings=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SEARCH_RADIUS,
                "Search radius around the photo's GPS position, m (empty: smgeo's)",
                type=QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.001,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.TOP_K, "Hits per click, best first", defaultValue=1, minValue=1)
        )
        advanced = [
            QgsProcessingParameterBand(
                self.BANDS,
                "Raster bands: red, green, blue or one grey (empty: smgeo picks)",
                parentLayerParameterName=self.RASTER,
                optional=True,
                allowMultiple=True,
            ),
            QgsProcessingParameterFile(
                self.WEIGHTS,
                "Model weights folder (empty: the bundled model)",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            ),
            QgsProcessingParameterBoolean(
                self.VERIFY, "Check each hit by matching (adds verified, verify_inliers, verify_distance_m)", False
            ),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)

    def add_hits_output(self, description: str) -> None:
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, description, QgsProcessing.TypeVectorPolygon))

    def raster_path(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        """The file behind the raster parameter; smgeo reads rasters itself, with GDAL."""
        layer = self.parameterAsRasterLayer(parameters, self.RASTER, context)
        if layer is None:
            raise QgsProcessingException(f"reference raster {parameters.get(self.RASTER)!r} cannot be opened")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"reference raster {layer.name()} comes from the {layer.providerType()} provider, not a file: "
                "save it as a GeoTIFF (Raster > Conversion > Translate) and give that"
            )
        return layer.source()

    def library_options(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """Imports smgeo; the detectors and the options :func:`smgeo_cli.locate.locate` takes, as the CLI makes them."""
        require_smgeo(Path(ProcessingConfig.getSetting(ENVIRONMENT_SETTING) or default_environment()))
        # The CLI's own builder of detectors (``--method``, ``--weights``), so both load the same.
        from smgeo_cli.commands.locate_cmd import method_detectors
        from smgeo_cli.commands.options import Method
        from smgeo_cli.locate import SearchArea

        weights = self.parameterAsFile(parameters, self.WEIGHTS, context)
        radius = parameters.get(self.SEARCH_RADIUS)
        with smgeo_errors():
            detectors = method_detectors(
                Method(self.parameterAsEnumString(parameters, self.METHOD, context)),
                Path(weights) if weights else None,
                "auto",
            )
        return {
            "detectors": detectors,
            "bands": self.parameterAsInts(parameters, self.BANDS, context) or None,
            "top_k": self.parameterAsInt(parameters, self.TOP_K, context),
            "verify": self.parameterAsBoolean(parameters, self.VERIFY, context),
            "search": SearchArea(
                **({"radius_m": self.parameterAsDouble(parameters, self.SEARCH_RADIUS, context)} if radius else {})
            ),
        }

    def write_hits(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        hits: Sequence[tuple[Any, dict[str, Any]]],
        crs: QgsCoordinateReferenceSystem,
    ) -> str:
        """The OUTPUT layer in the raster's ``crs``: one polygon per hit, given as (ring in that CRS, properties).

        The columns and their types are those ``smgeo locate -o hits.gpkg`` writes.
        """
        from smgeo_cli.geo.output import property_columns

        columns = property_columns([properties for _, properties in hits])
        fields = QgsFields()
        for name, values in columns.items():
            fields.append(QgsField(name, FIELD_TYPES.get(values.dtype.kind, QVariant.String)))
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Polygon, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        values = [column.tolist() for column in columns.values()]
        for index, (ring, _) in enumerate(hits):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(float(x), float(y)) for x, y in ring]]))
            feature.setAttributes([column[index] for column in values])
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        return dest


@contextmanager
def smgeo_errors() -> Iterator[None]:
    """smgeo's errors as QgsProcessingException with its one-line message; a cancel as one too."""
    from smgeo_cli.errors import SmgeoError

    try:
        yield
    except Canceled:
        raise QgsProcessingException("canceled: nothing was written") from None
    except SmgeoError as err:
        raise QgsProcessingException(str(err)) from err
