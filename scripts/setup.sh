#!/usr/bin/env bash
# Create .venv (once) and install smgeo with its test tools into it. Safe to re-run.
# Usage: bash scripts/setup.sh [VENV_DIR [PIP_OPTION...]]; $PYTHON picks the interpreter.
# scripts/test_qgis.sh makes .venv-qgis this way, from QGIS's Python with QGIS's numpy pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
shift $(($# > 0 ? 1 : 0))
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
# timm imports torchvision, which must be the build made for this torch.
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" "$@"
python -m pip install -q -e ".[dev]" "$@"
