#!/usr/bin/env bash
# Build the QGIS plugin zip, for QGIS's Plugins > Manage and Install Plugins > Install from ZIP.
# Usage: bash scripts/build_qgis_plugin.sh [OUT_DIR]   (default dist/); prints the zip's path.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
version=$(sed -n 's/^version=//p' qgis_plugin/smgeo_qgis/metadata.txt)
zip_path="$out/smgeo_qgis-$version.zip"
mkdir -p "$out"
rm -f "$zip_path"
# The zip holds the plugin's folder at its top, as QGIS expects; no bytecode.
(cd qgis_plugin && zip -q -r -X "$zip_path" smgeo_qgis -x '*/__pycache__/*' '*.pyc')
echo "$zip_path"
