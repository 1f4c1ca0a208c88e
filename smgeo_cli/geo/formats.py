"""Output formats by file suffix (no imports, so that the command line can check an output name quickly)."""

GEOJSON_SUFFIXES = (".geojson", ".json")
OGR_DRIVERS = {".gpkg": "GPKG", ".fgb": "FlatGeobuf"}
# Formats whose files hold many layers: writing one replaces that layer and keeps the others.
MULTI_LAYER_SUFFIXES = (".gpkg",)
