"""What every source of training pairs shares: the pair, the choice of its object, and the writing of splits.

Sources (``synth``'s renders, ``stacks``' cross-date renders, ``mine``'s
matched photos) each find tiles and views their own way; here is what they
have in common:

- a ``TrainingPair``: tile, query, box, click and tile-to-query homography;
- object choice: sizes drawn log-uniform over what a tile can show
  (``object_size_range``), the found region nearest the draw
  (``nearest_object``), and a random box where none is found
  (``random_mask``, category ``random``);
- splits: pairs per split from the fractions (``split_counts``), the units
  (ground blocks, photos) that val and test take (``held_out_units``), and
  writing pairs, records and homographies in the CVOGL layout
  (``write_split``, ``write_splits``). The k-th pair of a split draws from
  its own generator seeded by (seed, split, k), so a split's pairs do not
  depend on how many the other splits get.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from smgeo_cli.data.cvogl import (
    CATEGORY_RANDOM,
    QUERY_DIR,
    SATELLITE_DIR,
    CVOGLRecord,
    make_dataset_folders,
    write_homographies,
    write_records,
)
from smgeo_cli.data.objects import ObjectRegion
from smgeo_cli.errors import UsageError

SPLITS = ("train", "val", "test")
CATEGORY_OBJECT = "object"
# Longer box side of the objects wanted, metres.
OBJECT_SIZE_M = (20.0, 300.0)
# Objects are at least this many tile pixels across, however coarse the imagery.
MIN_OBJECT_PX = 12
# Objects also span at most this fraction of the tile, so there is ground around them.
MAX_OBJECT_FRACTION = 0.6
# Tile positions tried per pair before falling back to a random box.
TILE_TRIES = 6
# Fraction of a tile that must hold data.
MIN_VALID = 0.98


@dataclass(frozen=True)
class TrainingPair:
    """A rendered or mined pair: tile (R, R, 3) and query (Q, Q, 3) uint8; box (x1, y1, x2, y2) in tile
    pixels; click (x, y) in query pixels; category; the tile's file name; homography (3, 3) from tile to
    query pixels; ``photo``, the label of the photo a mined query was cut from ("" for a rendered one),
    which its file name carries."""

    tile: np.ndarray
    query: np.ndarray
    box: tuple[float, float, float, float]
    click: tuple[float, float]
    category: str
    sat_name: str
    homography: np.ndarray
    photo: str = ""


def object_size_range(gsd_m: float, ref_size: int) -> tuple[float, float]:
    """Object sizes (longer box side, metres) wanted in a tile: OBJECT_SIZE_M within what the tile can show.

    Photos have no GSD: at a gsd_m of 1 the sizes are working pixels.
    """
    low = max(OBJECT_SIZE_M[0], MIN_OBJECT_PX * gsd_m)
    return low, max(low, min(OBJECT_SIZE_M[1], MAX_OBJECT_FRACTION * ref_size * gsd_m))


def draw_object_size(rng: np.random.Generator, gsd_m: float, ref_size: int) -> float:
    """An object size, tile pixels, log-uniform over ``object_size_range``.

    Taking the found region nearest such a draw spreads sizes over the range
    rather than crowding them at its small end, where regions are most numerous.
    """
    low, high = object_size_range(gsd_m, ref_size)
    return math.exp(rng.uniform(math.log(low), math.log(high))) / gsd_m


def nearest_object(regions: Sequence[ObjectRegion], size_px: float) -> np.ndarray:
    """The mask of the region whose longer box side is nearest size_px (by ratio); regions must not be empty."""
    sizes = np.array([max(r.box_xyxy[2] - r.box_xyxy[0], r.box_xyxy[3] - r.box_xyxy[1]) for r in regions])
    return regions[int(np.argmin(np.abs(np.log(sizes / size_px))))].mask


def random_mask(
    rng: np.random.Generator,
    ref_size: int,
    gsd_m: float,
    visible: Callable[[tuple[int, int, int, int]], bool] | None = None,
) -> np.ndarray | None:
    """A rectangle with sides log-uniform in ``object_size_range``, anywhere in the tile: the fallback box.

    With ``visible`` (a box (x1, y1, x2, y2) in tile pixels -> whether the
    query can show it whole) up to TILE_TRIES rectangles are drawn until one
    is; None when none is.
    """
    low, high = object_size_range(gsd_m, ref_size)
    for _ in range(TILE_TRIES):
        width, height = (np.exp(rng.uniform(math.log(low), math.log(high), size=2)) / gsd_m).astype(int) + 1
        x, y = rng.integers(0, ref_size - width + 1), rng.integers(0, ref_size - height + 1)
        if visible is None or visible((x, y, x + width, y + height)):
            mask = np.zeros((ref_size, ref_size), dtype=bool)
            mask[y : y + height, x : x + width] = True
            return mask
    return None


def check_pair_options(n: int, val_frac: float, test_frac: float, gsd_m: float | None = None) -> None:
    """UsageError unless n >= 1, the fractions are in [0, 1] summing to at most 1 and gsd_m (if given) > 0.

    A sum of 1 leaves no training pairs: ``--test-frac 1`` writes a held-out
    test set from imagery kept out of training.
    """
    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    if not (0.0 <= val_frac <= 1.0 and 0.0 <= test_frac <= 1.0 and val_frac + test_frac <= 1.0):
        raise UsageError(f"--val-frac {val_frac} and --test-frac {test_frac} must be in [0, 1] and sum to at most 1")
    if gsd_m is not None and gsd_m <= 0:
        raise UsageError(f"--gsd must be positive metres per pixel, got {gsd_m}")


def split_counts(n: int, val_frac: float, test_frac: float) -> dict[str, int]:
    """Pairs per split (fractions checked by ``check_pair_options``): val and test get their rounded fractions
    of n (test no more than val leaves), train the rest."""
    val = round(n * val_frac)
    test = min(round(n * test_frac), n - val)  # 3 pairs at 0.5 / 0.5 round to 2 + 2
    return {"train": n - val - test, "val": val, "test": test}


def held_out_units(n_units: int, counts: dict[str, int], minimum: int) -> dict[str, int]:
    """How many of n_units (ground blocks, photos) val and test each take, for the splits that get pairs.

    In proportion to the split's pairs, and at least ``minimum``; train keeps
    the rest, which may be too few (the caller says so).
    """
    total = sum(counts.values())
    return {s: max(minimum, round(n_units * counts[s] / total)) for s in ("val", "test") if counts[s]}


def save_pair(root: Path, index: int, query_name: str, pair: TrainingPair) -> CVOGLRecord:
    """Write the pair's tile and query images under root (CVOGL layout); return its record."""
    Image.fromarray(pair.tile).save(root / SATELLITE_DIR / pair.sat_name, quality=95)
    Image.fromarray(pair.query).save(root / QUERY_DIR / query_name, quality=95)
    return CVOGLRecord(index, query_name, pair.sat_name, pair.click, pair.box, pair.category)


def write_split(root: Path, name: str, split: str, pairs: Iterable[tuple[str, TrainingPair]]) -> list[CVOGLRecord]:
    """Save each (query file name, pair) under root as it comes, then the split's records and homographies."""
    records, homographies = [], {}
    for query_name, pair in pairs:
        records.append(save_pair(root, len(records), query_name, pair))
        homographies[query_name] = pair.homography
    write_records(root, name, split, records)
    write_homographies(root, name, split, homographies)
    return records


def write_splits(
    root: Path,
    name: str,
    counts: dict[str, int],
    seed: int,
    make_pair: Callable[[np.random.Generator, str], TrainingPair],
    on_pair: Callable[[str], None] | None = None,
) -> int:
    """Write counts[split] pairs of each split that gets any, made by make_pair(rng, split); return how many
    boxes were random fallbacks.

    Queries are named ``<name>_<split>_<k>[_<photo>].jpg``; on_pair is called
    with the split name after each pair.
    """
    make_dataset_folders(root)
    fallbacks = 0
    for split in SPLITS:
        if counts[split]:
            records = write_split(root, name, split, _split_pairs(name, split, counts[split], seed, make_pair, on_pair))
            fallbacks += sum(record.category == CATEGORY_RANDOM for record in records)
    return fallbacks


def _split_pairs(
    name: str,
    split: str,
    count: int,
    seed: int,
    make_pair: Callable[[np.random.Generator, str], TrainingPair],
    on_pair: Callable[[str], None] | None,
) -> Iterator[tuple[str, TrainingPair]]:
    for index in range(count):
        pair = make_pair(np.random.default_rng((seed, zlib.crc32(split.encode()), index)), split)
        yield f"{name}_{split}_{index:06d}{'_' + pair.photo if pair.photo else ''}.jpg", pair
        if on_pair is not None:
            on_pair(split)
