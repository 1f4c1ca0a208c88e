#!/usr/bin/env bash
# Training on your machine, end to end: set up, generate a small dataset with
# known answers, train smgeo-nano on it for a few CPU minutes and evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
demo=runs/quickstart
rm -rf "$demo"
smgeo toy-data "$demo/data" --scenes 8 --splits train,test --query-size 256 --ref-size 512
# A 256-pixel reference keeps this to a few minutes on a laptop CPU.
smgeo train "$demo/data" --config smgeo-nano --ref-size 256 --out "$demo/run" \
    --epochs 60 --max-steps 120 --batch-size 8 --lr 1e-3 --no-augment --workers 0
echo "Pairs it trained on (memorised):"
smgeo eval "$demo/data" --split train --weights "$demo/run/last"
echo "Unseen pairs (16 training pairs teach little general matching: expect far lower scores):"
smgeo eval "$demo/data" --split test --weights "$demo/run/last"
