"""Open a georeferenced reference raster and read RGB windows of it at any scale.

A raster is only ever read by windows (or decimated for statistics), so its
size is bounded by the disk, not memory. Windows are rasterio ``Window``s in
full-raster pixel coordinates (see ``coords``), float offsets and sizes
allowed, and may run past the raster's edges. Reads return channel-last
arrays: ``rgb`` (H, W, 3) uint8 and ``valid`` (H, W) bool.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from rasterio.windows import Window

from ..errors import GeoreferenceError, InputFileError, NoDataError, UsageError
from ..images import Stretch
from .coords import ground_resolution

# Long side, in pixels, of the decimated read the stretch statistics come from.
STATS_SIZE = 1024
# Tolerance, in output pixels, for deciding that an output pixel lies on the raster.
_EDGE_EPS = 1e-6
# GDAL's block cache defaults to 5% of RAM and keeps filling as a large raster
# is read tile by tile, so peak memory would grow with the raster.
GDAL_CACHE_MB = 32


BYTE_STRETCH = Stretch(low=(0.0, 0.0, 0.0), high=(255.0, 255.0, 255.0))


@dataclass(eq=False)
class ReferenceRaster:
    """An open reference raster with everything needed to read it as RGB tiles.

    ``bands`` are the 1-based band numbers shown as red, green and blue (one
    band repeated for grey). ``stretch`` was fitted once for the whole raster,
    so a value reads as the same byte in every window. ``gsd_m`` is the ground
    size in metres of a pixel step along columns and along rows at the raster's
    centre. ``fingerprint`` changes whenever the pixels a window reads could.
    """

    path: Path
    dataset: DatasetReader
    bands: tuple[int, int, int]
    stretch: Stretch
    gsd_m: tuple[float, float]
    fingerprint: str

    @property
    def crs(self) -> CRS:
        return self.dataset.crs

    @property
    def transform(self) -> Affine:
        return self.dataset.transform

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def height(self) -> int:
        return self.dataset.height

    def close(self) -> None:
        self.dataset.close()

    def __enter__(self) -> ReferenceRaster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_env() -> rasterio.Env:
    """The rasterio environment to read references in (``with read_env(): ...``): a small GDAL block cache.

    With it, the memory a tiled pass takes stays flat however large the raster.
    """
    # rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, which counts bytes, not megabytes.
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024)


def _check_georeference(path: Path, dataset: DatasetReader) -> None:
    if dataset.crs is not None and not dataset.transform.is_identity:
        return
    if dataset.gcps[0]:
        fix = f"it has ground control points only: warp it first, e.g. `gdalwarp -t_srs EPSG:<code> {path} out.tif`"
    else:
        fix = f"add a world file, or set both: `gdal_edit.py -a_srs EPSG:<code> -a_ullr <ulx> <uly> <lrx> <lry> {path}`"
    raise GeoreferenceError(
        f"reference raster {path} is not georeferenced: it needs a CRS and a geotransform; {fix}"
    )


def _default_bands(path: Path, dataset: DatasetReader) -> tuple[int, int, int]:
    interp = dataset.colorinterp
    colour: dict[ColorInterp, int] = {}
    for band, ci in enumerate(interp, start=1):
        colour.setdefault(ci, band)
    if all(ci in colour for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return colour[ColorInterp.red], colour[ColorInterp.green], colour[ColorInterp.blue]
    data_bands = [band for band, ci in enumerate(interp, start=1) if ci != ColorInterp.alpha]
    if not data_bands:
        raise InputFileError(f"reference raster {path} has only alpha bands")
    if len(data_bands) >= 3:
        return data_bands[0], data_bands[1], data_bands[2]
    return data_bands[0], data_bands[0], data_bands[0]


def _check_bands(path: Path, dataset: DatasetReader, bands: Sequence[int]) -> tuple[int, int, int]:
    bands = tuple(int(b) for b in bands)
    if len(bands) not in (1, 3):
        raise UsageError(f"bands must be 1 or 3 band numbers (red,green,blue or one grey band), got {bands}")
    if not all(1 <= b <= dataset.count for b in bands):
        raise UsageError(f"bands {bands} do not exist in {path}: it has bands 1 to {dataset.count}")
    return bands * 3 if len(bands) == 1 else bands


def _fit_stretch(path: Path, dataset: DatasetReader, bands: tuple[int, int, int]) -> Stretch:
    if all(dataset.dtypes[b - 1] == "uint8" for b in bands):
        return BYTE_STRETCH
    if any(np.issubdtype(np.dtype(dataset.dtypes[b - 1]), np.complexfloating) for b in bands):
        raise InputFileError(f"reference raster {path} has complex-valued bands; convert them to real values first")
    # Decimated reads come from an overview when the file has one.
    scale = max(1.0, max(dataset.width, dataset.height) / STATS_SIZE)
    shape = (max(1, round(dataset.height / scale)), max(1, round(dataset.width / scale)))
    with _pixels_of(path):
        data = dataset.read(bands, out_shape=(3, *shape), resampling=Resampling.nearest)
        valid = (dataset.dataset_mask(out_shape=shape) > 0) & np.isfinite(data).all(axis=0)
    if not valid.any():
        raise NoDataError(f"reference raster {path} has no valid pixels (all nodata or masked)")
    return Stretch.fit(data[:, valid])


def _fingerprint(path: Path, dataset: DatasetReader, bands: tuple[int, int, int], stretch: Stretch) -> str:
    stat = path.stat()
    # The georeferencing is included because a sidecar (.aux.xml, world file)
    # can change it without touching the raster file itself.
    key = "|".join(
        str(v)
        for v in (path.resolve(), stat.st_size, stat.st_mtime_ns, dataset.transform, dataset.crs, bands, stretch)
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def open_reference(path: str | Path, bands: Sequence[int] | None = None) -> ReferenceRaster:
    """Open a georeferenced raster for RGB reads; close it with ``close()`` or ``with``.

    ``bands`` are 1-based band numbers: three for red, green, blue or one for
    grey. By default the red, green and blue bands by colour interpretation,
    else the first three non-alpha bands, else the first band as grey. uint8
    bands pass through; other types are stretched from their 2nd to 98th
    percentile, measured once on a decimated read of the valid pixels.

    Raises InputFileError for a missing or unreadable file, GeoreferenceError
    for a raster without CRS or geotransform, UsageError for bad ``bands`` and
    NoDataError when the raster holds no valid pixel.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"reference raster {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path)
    except (RasterioError, OSError) as err:
        raise InputFileError(f"cannot read reference raster {path}: {err}") from err
    try:
        _check_georeference(path, dataset)
        rgb = _default_bands(path, dataset) if bands is None else _check_bands(path, dataset, bands)
        stretch = _fit_stretch(path, dataset, rgb)
        gsd = ground_resolution(dataset.crs, dataset.transform, dataset.width / 2, dataset.height / 2)
        if not all(math.isfinite(v) and v > 0 for v in gsd):
            raise GeoreferenceError(
                f"reference raster {path}: its georeferencing puts its pixels off the Earth ({dataset.crs}, "
                f"{tuple(dataset.transform)[:6]}); check its CRS and geotransform"
            )
        return ReferenceRaster(
            path=path,
            dataset=dataset,
            bands=rgb,
            stretch=stretch,
            gsd_m=gsd,
            fingerprint=_fingerprint(path, dataset, rgb, stretch),
        )
    except BaseException:
        dataset.close()
        raise


def _on_raster(
    raster: ReferenceRaster, window: Window, out_shape: tuple[int, int]
) -> tuple[Window, slice, slice] | None:
    """The block of output pixels lying wholly on the raster, and the raster window it covers.

    Output pixel (i, j) covers raster pixels ``col_off + j * sx`` to
    ``col_off + (j + 1) * sx`` (likewise rows), sx = window width / out width.
    Output pixels only partly on the raster are left out: they read as padding.
    """
    height, width = out_shape
    sx, sy = window.width / width, window.height / height
    j0 = max(0, math.ceil(-window.col_off / sx - _EDGE_EPS))
    j1 = min(width, math.floor((raster.width - window.col_off) / sx + _EDGE_EPS))
    i0 = max(0, math.ceil(-window.row_off / sy - _EDGE_EPS))
    i1 = min(height, math.floor((raster.height - window.row_off) / sy + _EDGE_EPS))
    if j1 <= j0 or i1 <= i0:
        return None
    col0 = max(0.0, window.col_off + j0 * sx)
    row0 = max(0.0, window.row_off + i0 * sy)
    col1 = min(float(raster.width), window.col_off + j1 * sx)
    row1 = min(float(raster.height), window.row_off + i1 * sy)
    return Window(col0, row0, col1 - col0, row1 - row0), slice(i0, i1), slice(j0, j1)


@contextmanager
def _pixels_of(path: Path) -> Iterator[None]:
    """Turn a failed pixel read (a truncated or damaged file) into an InputFileError naming the file."""
    try:
        yield
    except RasterioError as err:
        # rasterio's own message points to the GDAL error it chained on.
        reason = " ".join(str(err.__cause__ or err).split())
        raise InputFileError(
            f"reference raster {path}: cannot read its pixels ({reason}); "
            f"the file may be truncated or damaged: check it with `gdalinfo -checksum {path}`"
        ) from None


def _read_mask(raster: ReferenceRaster, window: Window, shape: tuple[int, int]) -> np.ndarray:
    # dataset_mask merges nodata values, alpha bands and mask bands.
    with _pixels_of(raster.path):
        return raster.dataset.dataset_mask(window=window, out_shape=shape, resampling=Resampling.nearest) > 0


def read_valid(raster: ReferenceRaster, window: Window, out_shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: which output pixels of ``window`` resampled to ``out_shape`` hold data.

    A mask-only read, much cheaper than ``read_window`` when ``out_shape`` is
    small (a file's overviews serve decimated reads).
    """
    valid = np.zeros(out_shape, dtype=bool)
    part = _on_raster(raster, window, out_shape)
    if part is not None:
        inner, rows, cols = part
        valid[rows, cols] = _read_mask(raster, inner, (rows.stop - rows.start, cols.stop - cols.start))
    return valid


def has_valid_pixels(raster: ReferenceRaster, window: Window, side: int = 64) -> bool:
    """Whether ``window`` (inside the raster) holds valid pixels, judged from a mask read of at most side x side."""
    shape = (max(1, min(side, math.ceil(window.height))), max(1, min(side, math.ceil(window.width))))
    return bool(read_valid(raster, window, shape).any())


def read_window(
    raster: ReferenceRaster, window: Window, out_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Read a window of full-raster pixels as RGB resampled to ``out_shape`` (H, W).

    Returns ``rgb`` (H, W, 3) uint8, stretched with the raster's stretch, and
    ``valid`` (H, W) bool. Pixels off the raster, nodata, masked or NaN read as
    zeros with ``valid`` False. Shrinking reads average the pixels they cover,
    enlarging ones interpolate bilinearly.
    """
    rgb = np.zeros((*out_shape, 3), dtype=np.uint8)
    valid = np.zeros(out_shape, dtype=bool)
    part = _on_raster(raster, window, out_shape)
    if part is None:
        return rgb, valid
    inner, rows, cols = part
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    shrinking = inner.width > shape[1] or inner.height > shape[0]
    resampling = Resampling.average if shrinking else Resampling.bilinear
    with _pixels_of(raster.path):
        data = raster.dataset.read(raster.bands, window=inner, out_shape=(3, *shape), resampling=resampling)
    valid[rows, cols] = _read_mask(raster, inner, shape) & np.isfinite(data).all(axis=0)
    rgb[rows, cols] = np.moveaxis(raster.stretch.apply(data), 0, -1)
    rgb[~valid] = 0
    return rgb, valid
