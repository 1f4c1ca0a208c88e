"""Synthetic training pairs cut from the user's own georeferenced imagery, in the CVOGL layout.

For each pair a reference tile is cut from a raster at the tile GSD, an
object-like region is found in it (``objects``), and a virtual drone photo of
the object and its surroundings is rendered (``drone``): a true camera
homography of the flat ground for pitch 30-90 degrees, then the photometric
changes of a real photo. Rasters of the same ground (same CRS, sharing at
least half their area: dates of one place) are paired: the photo comes from
one and the tile from another, and only the ground they all cover is used.

Splits are by ground: the rasters' shared grid of square blocks, each
``block_tiles`` tile extents wide and anchored at the CRS origin, is dealt
to train, val and test, and a pair lives inside one block (its tile and the
ground its photo sees), so no held-out tile shares ground with a training
one. Grounds cut at different GSDs get different grids, which are not
checked against each other.

Satellite tiles are named like CVOGL's (``EASTING_NORTHING_EXTENT_EPSG``):
centre in the raster's CRS when it is projected in metres with an EPSG code,
else in the local UTM zone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from rasterio.transform import Affine
from rasterio.windows import Window

from smgeo_cli.data.cvogl import CATEGORY_RANDOM, satellite_name
from smgeo_cli.data.drone import degrade as degrade_view
from smgeo_cli.data.drone import sample_view
from smgeo_cli.data.geometry import apply_homography, interior_point, local_scale, tight_box, translation, warp_square
from smgeo_cli.data.objects import find_objects
from smgeo_cli.data.pairs import (
    CATEGORY_OBJECT,
    MIN_VALID,
    SPLITS,
    TILE_TRIES,
    TrainingPair,
    check_pair_options,
    draw_object_size,
    held_out_units,
    nearest_object,
    object_size_range,
    random_mask,
    split_counts,
    write_splits,
)
from smgeo_cli.defaults import DEFAULT_SYNTH_GSD_M
from smgeo_cli.errors import GeoreferenceError, NoDataError, UsageError
from smgeo_cli.geo.coords import LONLAT, transformer
from smgeo_cli.geo.raster import ReferenceRaster, open_reference, read_env, read_window

DEFAULT_GSD_M = DEFAULT_SYNTH_GSD_M


@dataclass(frozen=True)
class Ground:
    """Rasters of the same ground in one CRS (dates of one place), and the grid they are cut on.

    ``gsd_m`` is the tile ground sample distance, metres per pixel;
    ``units_per_px`` is the tile pixel size in CRS units (x, y); ``bounds``
    (left, bottom, right, top) is where all the rasters overlap, CRS units.
    ``metric`` says the CRS counts true ground metres (see ``_counts_metres``).
    """

    rasters: tuple[ReferenceRaster, ...]
    gsd_m: float
    units_per_px: tuple[float, float]
    bounds: tuple[float, float, float, float]
    metric: bool


@dataclass(frozen=True)
class Block:
    """One square of the split grid: a Ground and the CRS position of its top-left corner."""

    ground: Ground
    left: float
    top: float


@dataclass(frozen=True)
class SynthSummary:
    """Pairs written per split, and how many boxes were random fallbacks (no object found)."""

    counts: dict[str, int]
    fallbacks: int


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float, float] | None:
    left, bottom = max(a[0], b[0]), max(a[1], b[1])
    right, top = min(a[2], b[2]), min(a[3], b[3])
    return (left, bottom, right, top) if right > left and top > bottom else None


def _area(bounds: tuple[float, ...]) -> float:
    return (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])


def group_by_ground(rasters: Sequence[ReferenceRaster]) -> list[list[ReferenceRaster]]:
    """Rasters of the same ground, in input order: same CRS, and sharing at least half of the smaller's area.

    A raster joins the first group whose common ground it shares so, else
    starts its own; neighbouring rasters that merely touch stay apart.
    """
    groups: list[tuple[list[ReferenceRaster], tuple[float, float, float, float]]] = []
    for raster in rasters:
        bounds = tuple(raster.dataset.bounds)
        for index, (members, common) in enumerate(groups):
            shared = _overlap(common, bounds) if members[0].crs == raster.crs else None
            if shared and _area(shared) >= 0.5 * min(_area(common), _area(bounds)):
                groups[index] = (members + [raster], shared)
                break
        else:
            groups.append(([raster], bounds))
    return [members for members, _ in groups]


def ground_of(rasters: list[ReferenceRaster], gsd_m: float | None) -> Ground:
    """The Ground of rasters of one place: tiles at gsd_m (default 0.5 m, or the coarsest raster's) over their overlap.

    GeoreferenceError for a rotated or south-up raster.
    """
    for raster in rasters:
        if raster.transform.b != 0 or raster.transform.d != 0 or raster.transform.e >= 0:
            raise GeoreferenceError(
                f"reference raster {raster.path} is rotated or not north-up; warp it first (`gdalwarp in.tif out.tif`)"
            )
    bounds = tuple(rasters[0].dataset.bounds)
    for raster in rasters[1:]:
        bounds = _overlap(bounds, raster.dataset.bounds)
    first = rasters[0]
    metric = _counts_metres(first)
    if metric:
        # Projected metres are what tile names and extents count in, so a UTM
        # raster's 0.5 m pixel is 0.5 m here even though it is 0.5002 m on the ellipsoid.
        per_m = (1.0, 1.0)
        raster_gsd = max(max(abs(r.transform.a), abs(r.transform.e)) for r in rasters)
    else:
        # CRS units per metre from the first raster's own pixel (degrees for geographic CRSs).
        per_m = (abs(first.transform.a) / first.gsd_m[0], abs(first.transform.e) / first.gsd_m[1])
        raster_gsd = max(max(r.gsd_m) for r in rasters)
    gsd = gsd_m if gsd_m is not None else max(DEFAULT_GSD_M, raster_gsd)
    return Ground(tuple(rasters), gsd, (gsd * per_m[0], gsd * per_m[1]), tuple(bounds), metric)


def _blocks(ground: Ground, block_px: int) -> list[Block]:
    """The grid squares (block_px tile pixels wide, anchored at the CRS origin) wholly inside the ground."""
    left, bottom, right, top = ground.bounds
    width, height = block_px * ground.units_per_px[0], block_px * ground.units_per_px[1]
    columns = range(math.ceil(left / width), math.floor(right / width))
    rows = range(math.ceil(bottom / height), math.floor(top / height))
    return [Block(ground, i * width, (j + 1) * height) for j in rows for i in columns]


def _counts_metres(raster: ReferenceRaster) -> bool:
    """Whether the raster's CRS is projected in metres that are ground metres within 1% (UTM, not Mercator).

    Then tiles are cut and named in its coordinates; otherwise in geodesic
    metres and named in the local UTM zone.
    """
    crs = raster.crs
    if not (crs.is_projected and crs.linear_units_factor[1] == 1.0):
        return False
    return abs(abs(raster.transform.a) / raster.gsd_m[0] - 1.0) < 0.01


def tile_name(ground: Ground, transform: Affine, ref_size: int) -> str:
    """CVOGL name of the tile with this transform (tile pixels -> CRS), in metres of a projected CRS."""
    crs = ground.rasters[0].crs
    x, y = transform @ (ref_size / 2, ref_size / 2)
    epsg = crs.to_epsg()
    if not (epsg and ground.metric):
        lon, lat = transformer(crs, LONLAT).transform(x, y)
        zone = int((lon + 180.0) // 6.0) % 60 + 1
        epsg = (32600 if lat >= 0 else 32700) + zone
        x, y = transformer(LONLAT, f"EPSG:{epsg}").transform(lon, lat)
    return satellite_name(float(x), float(y), ref_size * ground.gsd_m, int(epsg))


def read_ground(
    raster: ReferenceRaster, transform: Affine, box: tuple[float, float, float, float], out_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) and valid mask of the box (x1, y1, x2, y2) in the pixels of transform, from raster."""
    to_raster = ~raster.transform @ transform
    col0, row0 = to_raster @ box[:2]
    col1, row1 = to_raster @ box[2:]
    return read_window(raster, Window(col0, row0, col1 - col0, row1 - row0), out_shape)


def snap_transform(transform: Affine, raster: ReferenceRaster) -> Affine:
    """The tile transform moved (less than a pixel) so that its corner is a corner of a raster pixel.

    Whole-pixel windows read sharper and much faster than windows that GDAL
    must resample by a fraction of a pixel. Left as is when the raster's
    pixels are larger than the tile's, where the move could exceed a tile pixel.
    """
    step_x, step_y = raster.transform.a, raster.transform.e
    if abs(step_x) > transform.a or abs(step_y) > abs(transform.e):
        return transform
    col = round((transform.c - raster.transform.c) / step_x)
    row = round((transform.f - raster.transform.f) / step_y)
    return Affine(transform.a, 0.0, raster.transform.c + col * step_x, 0.0, transform.e, raster.transform.f + row * step_y)


def _whole_pixels(
    raster: ReferenceRaster, transform: Affine, box: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """The box (x1, y1, x2, y2) in the pixels of transform grown to the edges of the raster's own pixels.

    Reading whole raster pixels is much faster than making GDAL resample by a
    fraction of a pixel (dates of one place are rarely on one pixel grid).
    """
    to_raster = ~raster.transform @ transform
    (col0, col1), (row0, row1) = (sorted(v) for v in zip(to_raster @ box[:2], to_raster @ box[2:]))
    to_tile = ~transform @ raster.transform
    x0, y0 = to_tile @ (math.floor(col0), math.floor(row0))
    x1, y1 = to_tile @ (math.ceil(col1), math.ceil(row1))
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _find_tile(
    rng: np.random.Generator, block: Block, reference: ReferenceRaster, ref_size: int, block_px: int
) -> tuple[Affine, np.ndarray, np.ndarray | None]:
    """Place a tile in the block; return its transform, pixels and an object mask (None if none found).

    Tries TILE_TRIES positions for an object; a position whose tile lacks data
    is not counted, up to 4 * TILE_TRIES positions in all. Of the regions
    found, the one nearest a ``draw_object_size`` draw is taken.
    """
    ground = block.ground
    size_m = object_size_range(ground.gsd_m, ref_size)
    target_px = draw_object_size(rng, ground.gsd_m, ref_size)
    found = None
    searched = 0
    for _ in range(4 * TILE_TRIES):
        # One pixel of slack on each side lets snap_transform move the tile without leaving the block.
        offset = rng.integers(1, block_px - ref_size, size=2)
        left = block.left + offset[0] * ground.units_per_px[0]
        top = block.top - offset[1] * ground.units_per_px[1]
        unsnapped = Affine(ground.units_per_px[0], 0.0, left, 0.0, -ground.units_per_px[1], top)
        transform = snap_transform(unsnapped, reference)
        tile, valid = read_ground(reference, transform, (0.0, 0.0, ref_size, ref_size), (ref_size, ref_size))
        if valid.mean() < MIN_VALID:
            continue
        found = transform, tile
        regions = find_objects(tile, ground.gsd_m, size_m)
        if regions:
            return transform, tile, nearest_object(regions, target_px)
        searched += 1
        if searched == TILE_TRIES:
            break
    if found is None:
        raise NoDataError(f"reference raster {reference.path} has no data around {block.left:.2f}, {block.top:.2f}")
    return found[0], found[1], None


def render_pair(
    rng: np.random.Generator,
    block: Block,
    reference: ReferenceRaster,
    source: ReferenceRaster,
    *,
    query_size: int,
    ref_size: int,
    block_px: int,
    degrade: bool = True,
) -> TrainingPair:
    """One pair: a tile from reference and a drone view rendered from source.

    The tile comes from reference, the query from source (the same raster or
    another date of the same ground); the query sees only ground of the block.
    category is CATEGORY_OBJECT for a found region, CATEGORY_RANDOM for a
    fallback box. With degrade=False the query keeps the archive's colours
    (for checks); otherwise ``drone.degrade`` is applied.
    """
    transform, tile, mask = _find_tile(rng, block, reference, ref_size, block_px)
    category = CATEGORY_OBJECT
    if mask is None:
        mask, category = random_mask(rng, ref_size, block.ground.gsd_m), CATEGORY_RANDOM
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    # Contour points are pixel centres; + 0.5 puts them in pixel-edge coordinates.
    outline = np.concatenate(contours).reshape(-1, 2).astype(np.float64) + 0.5
    homography, pitch_deg = sample_view(rng, outline, query_size)

    # The ground the photo sees, clipped to the block, read no sharper than the view needs.
    corners = query_size * np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    footprint = apply_homography(np.linalg.inv(homography), corners)
    block_x0, block_y0 = ~transform @ (block.left, block.top)
    x0, y0 = np.maximum(np.floor(footprint.min(axis=0)), (block_x0, block_y0))
    x1, y1 = np.minimum(np.ceil(footprint.max(axis=0)), (block_x0 + block_px, block_y0 + block_px))
    x0, y0, x1, y1 = _whole_pixels(source, transform, (x0, y0, x1, y1))
    shrink = min(1.0, 2.0 * local_scale(homography, outline.mean(axis=0)))
    shape = (max(2, round((y1 - y0) * shrink)), max(2, round((x1 - x0) * shrink)))
    context, _ = read_ground(source, transform, (x0, y0, x1, y1), shape)
    context_to_tile = translation(x0, y0) @ np.diag([(x1 - x0) / shape[1], (y1 - y0) / shape[0], 1.0])
    query = warp_square(context, homography @ context_to_tile, query_size, cv2.INTER_LINEAR)
    if degrade:
        query = degrade_view(query, rng, pitch_deg)
    click = apply_homography(homography, interior_point(mask)[None])[0]
    name = tile_name(block.ground, transform, ref_size)
    return TrainingPair(tile, query, tight_box(mask), (float(click[0]), float(click[1])), category, name, homography)


def deal_blocks(
    blocks: list[Block], counts: dict[str, int], rng: np.random.Generator, block_m: float
) -> dict[str, list[Block]]:
    """Shuffle the blocks and deal them to the splits that get pairs, val and test in proportion to their pairs.

    Every such split gets at least one block and train keeps the rest;
    UsageError (naming the block side, block_m metres) when there are too few.
    """
    order = [blocks[i] for i in rng.permutation(len(blocks))]
    dealt: dict[str, list[Block]] = {}
    start = 0
    for split, take in held_out_units(len(blocks), counts, minimum=1).items():
        dealt[split], start = order[start : start + take], start + take
    if counts["train"]:
        dealt["train"] = order[start:]
    if not all(dealt.values()):
        raise UsageError(
            f"the rasters hold {len(blocks)} whole {block_m:.0f} m split blocks, too few for "
            f"{len(dealt)} splits with pairs; lower --ref-size, make --gsd finer or set --val-frac/--test-frac to 0"
        )
    return {split: dealt[split] for split in SPLITS if split in dealt}


def write_synth_dataset(
    rasters: Sequence[str | PathLike[str]],
    out: str | PathLike[str],
    n: int,
    *,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    query_size: int = 256,
    ref_size: int = 1024,
    gsd_m: float | None = None,
    block_tiles: float = 2.0,
    degrade: bool = True,
    name: str = "Synth",
    on_pair: Callable[[str], None] | None = None,
) -> SynthSummary:
    """Write n synthetic pairs from the rasters in the CVOGL layout under out; return counts per split.

    gsd_m is the tile ground sample distance (metres per pixel; default 0.5 m
    or the coarsest raster's, if coarser). Split blocks are block_tiles tile
    extents wide. Output depends only on the inputs and seed. on_pair is called
    with the split name after each pair. Only splits with pairs get a file.
    """
    check_pair_options(n, val_frac, test_frac, gsd_m)
    if block_tiles < 1.0:
        raise UsageError(f"block_tiles must be at least 1, got {block_tiles}")
    counts = split_counts(n, val_frac, test_frac)
    block_px = math.ceil(block_tiles * ref_size)
    with read_env(), ExitStack() as stack:
        opened = [stack.enter_context(open_reference(path)) for path in rasters]
        grounds = [ground_of(group, gsd_m) for group in group_by_ground(opened)]
        # A grid square that two grounds of one CRS both hold is kept once, so it joins one split.
        cells = {}
        for ground in grounds:
            for block in _blocks(ground, block_px):
                cells.setdefault((ground.rasters[0].crs.to_wkt(), round(block.left, 6), round(block.top, 6)), block)
        blocks = list(cells.values())
        block_m = max(block_tiles * ref_size * g.gsd_m for g in grounds)
        dealt = deal_blocks(blocks, counts, np.random.default_rng((seed, 0)), block_m)
        tile_sources: dict[str, Path] = {}

        def make_pair(rng: np.random.Generator, split: str) -> TrainingPair:
            block = dealt[split][int(rng.integers(len(dealt[split])))]
            dates = block.ground.rasters
            pick = rng.choice(len(dates), size=min(2, len(dates)), replace=False)
            reference, source = dates[pick[0]], dates[pick[-1]]
            # Dates of one place share tile names, so a name stays with the raster that drew it first.
            while True:
                pair = render_pair(
                    rng, block, reference, source,
                    query_size=query_size, ref_size=ref_size, block_px=block_px, degrade=degrade,
                )
                if tile_sources.setdefault(pair.sat_name, reference.path) == reference.path:
                    return pair

        fallbacks = write_splits(Path(out), name, counts, seed, make_pair, on_pair)
    return SynthSummary(counts, fallbacks)
