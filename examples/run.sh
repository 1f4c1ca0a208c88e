#!/usr/bin/env bash
# The quickstart: set up, then find a clicked building of a drone photo on a
# real 0.5 m raster of Rotterdam (matcher, else the bundled model), writing a
# GeoJSON and a preview PNG; then all four example photos at once with each method,
# scored against the true boxes in examples/data/truth.csv (see examples/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out=runs/example
mkdir -p "$out"
smgeo locate examples/data/dark_roof_building.jpg --click 311.0,230.7 --ref examples/data/pan1.tif \
    -o "$out/dark_roof_building.geojson" --preview "$out/dark_roof_building.png"
echo "Wrote $out/dark_roof_building.geojson (open it in QGIS over examples/data/pan1.tif)" \
    "and $out/dark_roof_building.png"
python examples/score.py "$out/dark_roof_building.geojson"
echo "All four example photos: --method auto (the default; the matcher's fit, else the model), then each alone:"
for method in auto smgeo match; do
    smgeo batch examples/data --clicks examples/data/clicks.csv --ref examples/data/pan1.tif -o "$out/all_$method.geojson" \
        --method "$method" --quiet
    echo "--method $method:"
    python examples/score.py "$out/all_$method.geojson"
done
