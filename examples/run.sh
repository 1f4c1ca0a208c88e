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
echo "All four example photos: --method auto (the default: the matcher's fit, SIFT then XFeat, else the model)," \
    "then the model alone and the matcher with each kind of features:"
for run in "auto" "smgeo" "match --features sift" "match --features xfeat"; do
    name=${run// --features /_}
    # shellcheck disable=SC2086 # the method and its options, split on purpose
    smgeo batch examples/data --clicks examples/data/clicks.csv --ref examples/data/pan1.tif -o "$out/all_$name.geojson" \
        --method $run --quiet
    echo "--method $run:"
    python examples/score.py "$out/all_$name.geojson"
done
