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
# torch first, so that the project's requirement finds it met. A CPU-only build is taken where pip
# finds one (a local wheelhouse, or PyTorch's CPU index given as an option, e.g.
# `bash scripts/setup.sh .venv --extra-index-url https://download.pytorch.org/whl/cpu`); otherwise
# PyPI's wheel, which on Linux brings CUDA: about 5 GB installed instead of 1, not cached twice.
python -m pip install -q "torch==2.13.0+cpu" "$@" 2>/dev/null ||
    python -m pip install -q --no-cache-dir "torch>=2.3,<=2.14.1" "$@"
python -m pip install -q -e ".[dev]" "$@"
