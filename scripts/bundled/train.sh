#!/usr/bin/env bash
# How models/smgeo-nano-bundled was made: the exact commands, from the imagery
# in ../shared/data (see MODEL_CARD.md for licences, steps, wall time and
# scores). WORK holds the generated data and the run; it can be anywhere.
# The training step ran on one GPU (7 minutes on an H200); on a CPU the same
# command runs, many times slower.
#
#   bash scripts/bundled/train.sh [WORK]          # default /tmp/bd
#   MAX_STEPS=3000 bash scripts/bundled/train.sh  # a run of another length
#
# A stopped run continues with: smgeo train "$WORK/train1q70" ... --resume
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
SHARED=../shared/data
WORK=${1:-/tmp/bd}
MAX_STEPS=${MAX_STEPS:-1528}
mkdir -p "$WORK"

# Plain images get a nominal 0.7 m grid (the Dubai tiles carry no georeference).
python scripts/bundled/place_pixels.py "$SHARED"/train-imagery/dubai_mbrsc/*.jpg --out "$WORK/dubai" --gsd 0.7 --epsg 32640
# Autzen is a JPEG with its georeference in .aux.xml: a tiled GeoTIFF copy reads much faster.
python -c "from rasterio.shutil import copy; copy('$SHARED/train-imagery/autzen/autzen.jpg', '$WORK/autzen.tif', driver='GTiff', tiled=True, compress='deflate')"

# Training pairs: Dubai areas 1-6 and Autzen. Held out: Dubai areas 7-8, Zurich, Atlanta, Rotterdam
# (the test set below), and the NAIP dates (a cross-season test set at 5 m).
smgeo synth "$WORK"/dubai/dubai_tile[1-6]_*.tif "$WORK/autzen.tif" --out "$WORK/train1" --n 3000 \
    --val-frac 0.05 --test-frac 0 --ref-size 256 --query-size 128 --seed 1 --quiet
smgeo synth "$WORK"/dubai/dubai_tile[78]_*.tif "$SHARED/train-imagery/zurich/detectree_zurich_big_img.tif" \
    "$SHARED/imagery/sample_geotiff.tif" "$SHARED/imagery/pan1.tif" --out "$WORK/heldout" --n 300 \
    --val-frac 0 --test-frac 1 --ref-size 256 --query-size 128 --seed 7 --quiet
smgeo synth "$SHARED"/imagery/naip_multidate/*.tif --out "$WORK/heldout_naip" --n 100 \
    --val-frac 0 --test-frac 1 --ref-size 128 --query-size 128 --seed 7 --quiet
# Real photo-to-photo pairs mined from the Brighton Beach flight (never trained on).
smgeo mine "$SHARED"/train-imagery/brighton_beach_drone_nadir/*.JPG --out "$WORK/mined" --n 100 \
    --val-frac 0 --test-frac 1 --photo-scale 4 --ref-size 256 --query-size 128 --seed 3 --quiet

# The GPU machine took at most 64 MiB of files, so the pairs went there with
# their tiles re-encoded at JPEG quality 70.
rm -rf "$WORK/train1q70" && cp -r "$WORK/train1" "$WORK/train1q70"
python -c "import pathlib, sys; from PIL import Image
for p in pathlib.Path(sys.argv[1]).glob('*.jpg'): Image.open(p).convert('RGB').save(p, quality=70)" "$WORK/train1q70/satellite"

# From scratch at a 256-pixel reference (128 m at 0.5 m): box, heatmap and dense correspondence losses.
# The step count filled the 7 minutes the GPU was lent (measured 0.18 s a step beforehand).
smgeo train "$WORK/train1q70" --config smgeo-nano-wide --ref-size 256 --out "$WORK/run_gpu" \
    --epochs 100000 --max-steps "$MAX_STEPS" --batch-size 64 --lr 1.5e-3 --warmup-epochs 2 --workers 7

# The bundled folder: the run's last weights in fp16 (the val split, a few Dubai blocks, is too small to pick by).
python scripts/bundled/export.py "$WORK/run_gpu/last" models/smgeo-nano-bundled

# Scores on imagery never trained on, next to the matcher's on the same pairs.
for set in heldout heldout_naip mined; do
    python benchmarks/match_vs_model.py "$WORK/$set" --split test --weights models/smgeo-nano-bundled
done
