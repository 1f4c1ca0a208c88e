"""Where the plugin finds the smgeo library: QGIS's own Python, or a Python environment made for it.

smgeo needs torch, rasterio and OpenCV, which QGIS does not ship. They go
either into QGIS's Python itself or into a virtual environment made from
that Python (the provider's "Python environment" setting; by default
``smgeo-env`` in the QGIS profile folder), whose packages are then put
ahead of QGIS's own. Ahead, because QGIS's Python may carry older copies of
pure-Python packages that smgeo's dependencies need newer (Debian's sympy is
too old for torch, its attrs too old for affine).

Compiled packages must agree with QGIS's. Only one numpy can be loaded in
a process and QGIS's own modules (GDAL's Python bindings, SciPy) are built
against QGIS's, so the environment pins QGIS's numpy version, and one with
any other numpy is refused with the command that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import site
import sys
import sysconfig
from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingException

# The provider setting (Processing > Options > Providers > smgeo) naming the environment's folder.
ENVIRONMENT_SETTING = "SMGEO_PYTHON_ENVIRONMENT"
DISTRIBUTION = "smgeo-cli"


def default_environment() -> Path:
    """``smgeo-env`` in the active QGIS profile's folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "smgeo-env"


def _environment_path(environment: Path, kind: str) -> Path:
    """A ``sysconfig`` path ("purelib", "scripts") of a virtual environment made by this Python."""
    # Debian's Python defaults to its own "posix_local" scheme; virtual environments use "venv" (3.11+).
    scheme = "venv" if "venv" in sysconfig.get_scheme_names() else ("nt" if os.name == "nt" else "posix_prefix")
    return Path(sysconfig.get_path(kind, scheme, vars={"base": str(environment), "platbase": str(environment)}))


def qgis_python() -> Path:
    """The interpreter QGIS's Python is; inside QGIS ``sys.executable`` is often QGIS itself."""
    executable = Path(sys.executable)
    if executable.name.lower().startswith("python"):
        return executable
    if os.name == "nt":
        return Path(sys.base_exec_prefix) / "python.exe"
    return Path(sys.base_exec_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def _distributions(site_packages: Path) -> dict[str, str]:
    """Version by normalised name of each distribution installed in ``site_packages``."""
    if not site_packages.is_dir():
        return {}
    return {
        (dist.metadata["Name"] or "").lower().replace("_", "-"): dist.version
        for dist in importlib.metadata.distributions(path=[str(site_packages)])
    }


def _qgis_numpy() -> str | None:
    """The version of the numpy QGIS's Python imports, None without one."""
    try:
        return importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        return None


def _environment_python(environment: Path) -> Path:
    return _environment_path(environment, "scripts") / ("python.exe" if os.name == "nt" else "python")


def pip_arguments() -> list[str]:
    """What pip needs, besides smgeo, to install it for this QGIS: QGIS's numpy version, where it has numpy."""
    numpy = _qgis_numpy()
    return [f"numpy=={numpy}"] if numpy else []


def install_command(environment: Path) -> str:
    """The shell line that makes ``environment`` from QGIS's Python and installs smgeo into it."""
    arguments = " ".join(f'"{argument}"' for argument in [*pip_arguments(), DISTRIBUTION])
    python = _environment_python(environment)
    return f'"{qgis_python()}" -m venv "{environment}" && "{python}" -m pip install {arguments}'


def require_smgeo(environment: Path) -> None:
    """Make ``smgeo_cli`` importable, from QGIS's Python or from ``environment``.

    Raises QgsProcessingException with the one command that fixes it when
    neither has smgeo, or when the environment's numpy is not QGIS's.
    """
    # torch imports triton when present (its CUDA builds bring it), and triton's own LLVM crashes a QGIS
    # that has loaded Mesa's LLVM for OpenGL (QGIS 3.22 on Debian 12). smgeo compiles no kernels, so
    # triton stays out; a QGIS Python that already has triton keeps it.
    sys.modules.setdefault("triton", None)
    if importlib.util.find_spec("smgeo_cli") is not None:
        return
    site_packages = _environment_path(environment, "purelib")
    installed = _distributions(site_packages)
    if "smgeo-cli" not in installed:
        raise QgsProcessingException(
            f"smgeo is not installed for QGIS's Python {sys.version_info.major}.{sys.version_info.minor}: "
            f"run  {install_command(environment)}  and run this algorithm again"
        )
    theirs, ours = installed.get("numpy"), _qgis_numpy()
    if theirs and ours and theirs != ours:
        raise QgsProcessingException(
            f"the smgeo environment {environment} has numpy {theirs} but QGIS runs numpy {ours}, and one process "
            f'holds one numpy: run  "{_environment_python(environment)}" -m pip install "numpy=={ours}"'
        )
    before = list(sys.path)
    # addsitedir reads the environment's .pth files too (editable installs live in one); it appends.
    site.addsitedir(str(site_packages))
    sys.path[:] = [path for path in sys.path if path not in before] + before
    try:
        importlib.import_module("smgeo_cli")
    except ImportError as err:
        sys.path[:] = before
        raise QgsProcessingException(
            f"smgeo in {environment} cannot be imported ({err}): make the environment again with  "
            f"{install_command(environment)}"
        ) from err
