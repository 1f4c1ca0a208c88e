#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check smgeo_cli tests benchmarks examples scripts qgis_plugin
python -m pytest -q "$@"
