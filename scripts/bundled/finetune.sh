#!/usr/bin/env bash
# The CPU stage of the bundled model (see models/smgeo-nano-bundled/MODEL_CARD.md): the GPU model of
# train.sh continued on real cross-year pairs of new places, with and without the XFeat teacher,
# then every candidate scored on places none of them trained on. About 25 minutes a run on 2 cores.
#
#   bash scripts/bundled/finetune.sh [WORK]            # default /tmp/h15
#   ROUTES="none distil" bash scripts/bundled/finetune.sh
#
# Held out, chosen before any run: NAIP California claremont and riverside, Dubai areas 7-8, Zurich,
# Rotterdam (examples/), Brighton (mined), the NAIP multi-date quarter-quad. Trained on: NAIP chico,
# long_beach, bishop, eureka; Dubai areas 1-6; Autzen. A stopped run continues with --resume.
# Candidates are ranked, as decided before the runs, by the mean over the six held-out sets of the
# model's acc@0.5 on their object pairs (all pairs for the mined set, which has no object category).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
SHARED=../shared/data
NAIP=$SHARED/train-imagery/naip_california
WORK=${1:-/tmp/h15}
ROUTES=${ROUTES:-none distil match}
STEPS=${STEPS:-400}
mkdir -p "$WORK"

# Training pairs: other years of the same footprint (chico 2018/2020, long_beach 2016-2020), the same
# year where a place has one (bishop, eureka), and renders of the previous training rasters so the
# model keeps what it knew.
[ -d "$WORK/naip_cross_train" ] || python scripts/bundled/stack_pairs.py "$NAIP" "$WORK/naip_cross_train" \
    --places chico long_beach --pairs-per-stack 6 --split train --seed 11
[ -d "$WORK/naip_same_train" ] || python scripts/bundled/stack_pairs.py "$NAIP" "$WORK/naip_same_train" \
    --places bishop eureka chico long_beach --pairs-per-stack 2 --split train --seed 12 --same-date
if [ ! -d "$WORK/render_train" ]; then
    python scripts/bundled/place_pixels.py "$SHARED"/train-imagery/dubai_mbrsc/*.jpg --out "$WORK/dubai" --gsd 0.7 --epsg 32640
    python -c "from rasterio.shutil import copy; copy('$SHARED/train-imagery/autzen/autzen.jpg', '$WORK/autzen.tif', driver='GTiff', tiled=True, compress='deflate')"
    smgeo synth "$WORK"/dubai/dubai_tile[1-6]_*.tif "$WORK/autzen.tif" --out "$WORK/render_train" --n 1200 \
        --val-frac 0 --test-frac 0 --ref-size 256 --query-size 128 --seed 11 --quiet
fi

# Held-out pairs, one folder per set (the benchmark splits the NAIP sets by place).
[ -d "$WORK/ho_naip_cross" ] || python scripts/bundled/stack_pairs.py "$NAIP" "$WORK/ho_naip_cross" \
    --places claremont riverside --split test --seed 7
[ -d "$WORK/ho_naip_same" ] || python scripts/bundled/stack_pairs.py "$NAIP" "$WORK/ho_naip_same" \
    --places claremont riverside --split test --seed 8 --same-date
[ -d "$WORK/ho_render_dubai78" ] || smgeo synth "$WORK"/dubai/dubai_tile[78]_*.tif --out "$WORK/ho_render_dubai78" \
    --n 100 --val-frac 0 --test-frac 1 --ref-size 256 --query-size 128 --seed 7 --quiet
[ -d "$WORK/ho_render_zurich" ] || smgeo synth "$SHARED/train-imagery/zurich/detectree_zurich_big_img.tif" \
    --out "$WORK/ho_render_zurich" --n 60 --val-frac 0 --test-frac 1 --ref-size 192 --query-size 128 --seed 7 --quiet
[ -d "$WORK/ho_naip_multidate" ] || smgeo synth "$SHARED"/imagery/naip_multidate/*.tif --out "$WORK/ho_naip_multidate" \
    --n 100 --val-frac 0 --test-frac 1 --ref-size 128 --query-size 128 --seed 7 --quiet
[ -d "$WORK/ho_mined_brighton" ] || smgeo mine "$SHARED"/train-imagery/brighton_beach_drone_nadir/*.JPG \
    --out "$WORK/ho_mined_brighton" --n 100 --val-frac 0 --test-frac 1 --photo-scale 4 --ref-size 256 --query-size 128 --seed 3 --quiet

# The ablation: same pairs, steps, seed and schedule; only the teacher differs.
for route in $ROUTES; do
    [ -e "$WORK/run_$route/last/model.safetensors" ] && continue
    smgeo train "$WORK/naip_cross_train" "$WORK/naip_same_train" "$WORK/render_train" \
        --config models/smgeo-nano-bundled/config.json --init-weights models/smgeo-nano-bundled --out "$WORK/run_$route" \
        --epochs 100 --max-steps "$STEPS" --batch-size 16 --lr 3e-4 --warmup-epochs 0.1 --workers 1 --seed 0 --teacher "$route"
done

weights=(models/smgeo-nano-bundled)
for route in $ROUTES; do weights+=("$WORK/run_$route/last"); done
python benchmarks/match_vs_model.py "$WORK"/ho_naip_cross "$WORK"/ho_naip_same "$WORK"/ho_render_dubai78 \
    "$WORK"/ho_render_zurich "$WORK"/ho_naip_multidate "$WORK"/ho_mined_brighton \
    --weights "${weights[@]}" --match-cache "$WORK/match_cache"
