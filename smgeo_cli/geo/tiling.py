"""Cut a search area into overlapping model tiles and merge the tiles' boxes.

A tile is a square of ``size`` x ``size`` model pixels at the model's ground
sample distance, placed on the raster as a float window of full-raster pixels
(see ``coords`` for pixel conventions). Boxes are (N, 4) float arrays of
(x1, y1, x2, y2) pixel-edge coordinates, in tile pixels or raster pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from ..errors import UsageError
from .raster import ReferenceRaster, read_valid, read_window

# The cheap no-data check reads the mask at 1/MASK_CHECK_STEP of the tile's
# resolution: a tile whose only data is a sliver narrower than that is skipped.
MASK_CHECK_STEP = 4
# Tolerance, in tiles, when counting how many tiles an axis needs.
_COUNT_EPS = 1e-9
# Tiles may be at most this many times finer than the raster's pixels.
MAX_UPSAMPLE = 16


@dataclass(frozen=True)
class Tile:
    """One model tile: ``window`` in full-raster pixels (may run past the raster), ``size`` model pixels a side.

    ``row`` and ``col`` number the tile in its plan's grid.
    """

    window: Window
    size: int
    row: int
    col: int

    @property
    def scale(self) -> tuple[float, float]:
        """Raster pixels per tile pixel along x (columns) and y (rows)."""
        return self.window.width / self.size, self.window.height / self.size


@dataclass(frozen=True)
class _Axis:
    """Tile offsets along one axis: ``count`` of them spread evenly from ``start`` to ``start + span``."""

    start: float
    span: float
    count: int

    def offset(self, index: int) -> float:
        # np.linspace's arithmetic, so that a tile's window is the same to the last bit in every plan.
        if self.count == 1:
            return self.start
        return self.start + (self.span if index == self.count - 1 else index * (self.span / (self.count - 1)))


def _axis(start: float, length: float, extent: float, overlap: float) -> _Axis:
    """Tiles along one axis: the first at ``start``, the last ending at ``start + length``.

    Tiles are spread evenly, so neighbours overlap by at least ``overlap`` of
    a tile. An axis shorter than a tile gets one tile centred on it, so the
    area sits mid-tile with context (or padding) on both sides.
    """
    if length <= extent:
        return _Axis(start + (length - extent) / 2, 0.0, 1)
    count = math.ceil((length - extent) / (extent * (1.0 - overlap)) - _COUNT_EPS) + 1
    return _Axis(start, length - extent, count)


def _tile_extent(gsd_m: tuple[float, float], model_gsd_m: float, tile_size: int, overlap: float) -> tuple[float, float]:
    """A tile's width and height in raster pixels; UsageError for a bad overlap, size or GSD.

    A model GSD more than ``MAX_UPSAMPLE`` times finer than the raster's
    pixels is refused: the tiles would show blurred single pixels (and, at
    ``--gsd 1e-6``, need more tiles than could ever run).
    """
    if not 0.0 <= overlap < 1.0:
        raise UsageError(f"tile overlap must be at least 0 and below 1, got {overlap}")
    if tile_size < 1 or not (math.isfinite(model_gsd_m) and model_gsd_m > 0):
        raise UsageError(f"tiles need a positive size and GSD, got {tile_size} px at {model_gsd_m} m")
    raster_gsd = min(gsd_m)
    if raster_gsd > MAX_UPSAMPLE * model_gsd_m:
        raise UsageError(
            f"the raster's pixels are {raster_gsd:.3g} m and the tiles' {model_gsd_m:.3g} m: "
            f"{raster_gsd / model_gsd_m:.0f} times finer than the raster shows (at most {MAX_UPSAMPLE}); "
            f"give --gsd {raster_gsd / MAX_UPSAMPLE:.3g} or coarser, or a raster of finer resolution"
        )
    return tile_size * model_gsd_m / gsd_m[0], tile_size * model_gsd_m / gsd_m[1]


def _tiles(
    cols: _Axis, rows: _Axis, keep_cols: range, keep_rows: range, extent: tuple[float, float], tile_size: int
) -> list[Tile]:
    return [
        Tile(window=Window(cols.offset(j), rows.offset(i), *extent), size=tile_size, row=i, col=j)
        for i in keep_rows
        for j in keep_cols
    ]


def _check_count(count: int, max_tiles: int | None, model_gsd_m: float) -> None:
    if max_tiles is not None and count > max_tiles:
        raise UsageError(
            f"the search area needs {count:,} tiles at {model_gsd_m:.3g} m a pixel, more than --max-tiles "
            f"{max_tiles:,}: search a smaller area (--search-radius, --bbox), give a coarser --gsd, "
            "or raise --max-tiles"
        )


def plan_tiles(
    area: Window,
    gsd_m: tuple[float, float],
    model_gsd_m: float,
    tile_size: int,
    overlap: float = 0.25,
    max_tiles: int | None = None,
) -> list[Tile]:
    """Tiles covering ``area`` (a window of full-raster pixels), row by row.

    ``gsd_m`` is the raster's ground size of a pixel step along columns and
    rows (``ReferenceRaster.gsd_m``); each tile spans ``tile_size *
    model_gsd_m`` metres a side. ``overlap`` is the least fraction of a tile
    that neighbours share; the last tile of a row or column ends on the
    area's edge, and an area narrower than a tile gets one tile centred on it.
    Tiles reach past the area only then, and past the raster only where the
    area is narrower than a tile and lies near the raster's edge. More than
    ``max_tiles`` tiles is a UsageError, raised before any is made.
    """
    extent_x, extent_y = _tile_extent(gsd_m, model_gsd_m, tile_size, overlap)
    cols = _axis(area.col_off, area.width, extent_x, overlap)
    rows = _axis(area.row_off, area.height, extent_y, overlap)
    _check_count(cols.count * rows.count, max_tiles, model_gsd_m)
    return _tiles(cols, rows, range(cols.count), range(rows.count), (extent_x, extent_y), tile_size)


def _touching(axis: _Axis, extent: float, low: float, high: float) -> range:
    """Indexes of the tiles of ``axis`` that overlap [low, high], found without listing the axis's tiles."""
    if axis.count == 1:
        candidates = range(1)
    else:
        step = axis.span / (axis.count - 1)
        # One index of slack each side; the exact test below decides.
        first = max(0, math.floor((low - extent - axis.start) / step))
        last = min(axis.count - 1, math.ceil((high - axis.start) / step))
        candidates = range(first, last + 1)
    kept = [i for i in candidates if axis.offset(i) < high and axis.offset(i) + extent > low]
    return range(kept[0], kept[-1] + 1) if kept else range(0)


def plan_grid_tiles(
    area: Window,
    raster_size: tuple[int, int],
    gsd_m: tuple[float, float],
    model_gsd_m: float,
    tile_size: int,
    overlap: float = 0.25,
    max_tiles: int | None = None,
) -> list[Tile]:
    """The tiles of the raster-wide grid that intersect ``area``, row by row.

    The grid is :func:`plan_tiles` over the whole raster of ``raster_size``
    (width, height) pixels, so two areas get the very same tile wherever they
    overlap: that is what lets a flight's queries share cached tile encodings.
    ``row`` and ``col`` number the tile in the raster-wide grid. More than
    ``max_tiles`` tiles is a UsageError, raised before any is made.
    """
    width, height = raster_size
    extent_x, extent_y = _tile_extent(gsd_m, model_gsd_m, tile_size, overlap)
    cols = _axis(0.0, float(width), extent_x, overlap)
    rows = _axis(0.0, float(height), extent_y, overlap)
    keep_cols = _touching(cols, extent_x, area.col_off, area.col_off + area.width)
    keep_rows = _touching(rows, extent_y, area.row_off, area.row_off + area.height)
    _check_count(len(keep_cols) * len(keep_rows), max_tiles, model_gsd_m)
    return _tiles(cols, rows, keep_cols, keep_rows, (extent_x, extent_y), tile_size)


def iter_tiles(raster: ReferenceRaster, tiles: Iterable[Tile]) -> Iterator[tuple[Tile, np.ndarray, np.ndarray]]:
    """Yield (tile, rgb (size, size, 3) uint8, valid (size, size) bool) for tiles holding data.

    One tile's pixels are in memory at a time; run inside ``raster.read_env()``
    so GDAL's block cache does not grow with the raster either. A decimated
    mask read rules out empty tiles before their pixels are read; tiles whose
    pixels turn out all invalid (NaN where no nodata value is declared) are
    skipped as well.
    """
    for tile in tiles:
        check_size = max(1, tile.size // MASK_CHECK_STEP)
        if not read_valid(raster, tile.window, (check_size, check_size)).any():
            continue
        rgb, valid = read_window(raster, tile.window, (tile.size, tile.size))
        if valid.any():
            yield tile, rgb, valid


def tile_box_to_raster(tile: Tile, boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes in the tile's pixels to (N, 4) boxes in full-raster pixels."""
    sx, sy = tile.scale
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale = np.array([sx, sy, sx, sy])
    offset = np.array([tile.window.col_off, tile.window.row_off] * 2)
    return boxes * scale + offset


def _overlap(box: np.ndarray, others: np.ndarray, match: str) -> np.ndarray:
    """IoU, or intersection over the smaller box's area, of one box with each of ``others``."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0.0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0.0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    denom = area + areas - inter if match == "iou" else np.minimum(area, areas)
    return inter / np.maximum(denom, np.finfo(np.float64).tiny)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5, match: str = "iou") -> np.ndarray:
    """Greedy non-maximum suppression: indexes of the kept boxes, best score first.

    A box is dropped when it overlaps a better-scoring kept box by more than
    ``iou_threshold``. ``match="iou"`` measures overlap as intersection over
    union; ``match="ios"`` as intersection over the smaller box, which also
    drops the part of an object that a tile cut at its edge when the
    neighbouring tile saw the whole object.
    """
    if match not in ("iou", "ios"):
        raise ValueError(f"match must be 'iou' or 'ios', got {match!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[_overlap(boxes[best], boxes[order], match) <= iou_threshold]
    return np.array(keep, dtype=np.int64)
