#!/usr/bin/env bash
# The quickstart: set up, then find a clicked building of a drone photo on a
# real 0.5 m raster of Rotterdam with the bundled model, writing a GeoJSON and
# a preview PNG; then all four example photos at once, scored against the
# true boxes in examples/data/truth.csv (see examples/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out=runs/example
mkdir -p "$out"
smgeo locate examples/data/white_roof_building.jpg --click 317.5,300.1 --ref examples/data/pan1.tif \
    -o "$out/white_roof_building.geojson" --preview "$out/white_roof_building.png"
echo "Wrote $out/white_roof_building.geojson (open it in QGIS over examples/data/pan1.tif) and $out/white_roof_building.png"
python examples/score.py "$out/white_roof_building.geojson"
echo "All four example photos, with the matching method alongside:"
smgeo batch examples/data --clicks examples/data/clicks.csv --ref examples/data/pan1.tif -o "$out/all.geojson" --quiet
python examples/score.py "$out/all.geojson"
smgeo batch examples/data --clicks examples/data/clicks.csv --ref examples/data/pan1.tif -o "$out/all_match.geojson" \
    --method match --quiet
python examples/score.py "$out/all_match.geojson"
