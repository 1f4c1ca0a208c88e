#!/usr/bin/env bash
# Run the QGIS plugin's tests in real QGIS: headless, and the desktop application under Xvfb.
# Installs Debian's QGIS when missing. smgeo goes into .venv-qgis, a virtual environment made from
# QGIS's Python with the pip arguments the plugin gives users (QGIS's numpy), and the tests run on
# that interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
qgis_python=${QGIS_PYTHON:-/usr/bin/python3}
packages=(python3-qgis qgis-providers qgis xvfb python3-venv zip)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mapfile -t pip_arguments < <("$qgis_python" -c '
import sys
sys.path.insert(0, "qgis_plugin")
from smgeo_qgis.environment import pip_arguments
print("\n".join(pip_arguments()))')
PYTHON="$qgis_python" bash scripts/setup.sh .venv-qgis "${pip_arguments[@]}"
. .venv-qgis/bin/activate
QGIS_PYTHON="$qgis_python" QT_QPA_PLATFORM=offscreen python -m pytest -q qgis_plugin/tests "$@"
