"""Pairs across dates from image stacks: the same footprint imaged in several years, in the CVOGL layout.

A stack is a set of georeferenced rasters of one footprint, one per date,
named ``<place>_<year>_<n>.tif`` (the NAIP California crops of the shared
data are so named: the same ``<n>`` in two years has identical bounds). A
pair takes the reference tile from one date, finds an object in it, and
renders the drone view of that object from another date (``synth``'s
camera and degradations), so the two sides differ as real archive imagery
and a new photo do: other season, sun, vegetation, construction.
``same_date=True`` renders from the tile's own date instead, the
comparison that shows what the years cost.

The whole footprint is one ground block: the tile covers the footprint
less a small margin, the view sees only ground inside it (mirrored past
its edges, as ``synth`` does at block edges). Each pair's place and years
go to ``<Name>_<split>_stacks.json`` beside the annotation, so results can
be read per place and per year gap.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import numpy as np

from smgeo_cli.data.cvogl import make_dataset_folders
from smgeo_cli.data.pairs import TrainingPair, write_split
from smgeo_cli.data.synth import Block, ground_of, render_pair
from smgeo_cli.errors import InputFileError, UsageError
from smgeo_cli.geo.raster import open_reference, read_env
from smgeo_cli.io import write_text_atomic

STACK_NAME = re.compile(r"^(?P<place>.+)_(?P<year>\d{4})_(?P<n>\d+)$")
# Tile pixels left between the tile and the footprint's edge (render_pair places the tile inside its block).
MARGIN_PX = 2
SIDECAR_SUFFIX = "_stacks.json"


@dataclass(frozen=True)
class Stack:
    """One footprint of one place: ``rasters`` maps each year to its file."""

    place: str
    footprint: str
    rasters: dict[int, Path]

    @property
    def years(self) -> list[int]:
        return sorted(self.rasters)


def find_stacks(paths: Sequence[str | PathLike[str]]) -> list[Stack]:
    """Stacks of the ``<place>_<year>_<n>`` rasters among ``paths`` (files, or folders searched for ``*.tif``).

    Ordered by place, then footprint number. InputFileError when no file is so named.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.rglob("*.tif")) if path.is_dir() else [path])
    grouped: dict[tuple[str, str], dict[int, Path]] = {}
    for file in files:
        match = STACK_NAME.match(file.stem)
        if match:
            grouped.setdefault((match["place"], match["n"]), {})[int(match["year"])] = file
    if not grouped:
        raise InputFileError(f"no raster named <place>_<year>_<n>.tif among {', '.join(map(str, paths))}")
    stacks = [Stack(place, n, rasters) for (place, n), rasters in grouped.items()]
    return sorted(stacks, key=lambda stack: (stack.place, int(stack.footprint)))


def write_stack_pairs(
    stacks: Sequence[Stack],
    out: str | PathLike[str],
    *,
    pairs_per_stack: int = 1,
    same_date: bool = False,
    seed: int = 0,
    query_size: int = 256,
    split: str = "test",
    name: str = "Stacks",
    on_pair: Callable[[], None] | None = None,
) -> int:
    """Write ``pairs_per_stack`` pairs of each stack under ``out`` (CVOGL layout, one split); return the count.

    The reference date and, unless ``same_date``, another query date are
    drawn per pair; stacks of one date are skipped unless ``same_date``.
    Tiles are at the rasters' resolution, or ``synth``'s 0.5 m where that is
    finer. Deterministic in ``seed``.
    """
    if pairs_per_stack < 1:
        raise UsageError(f"pairs per stack must be at least 1, got {pairs_per_stack}")
    if not any(same_date or len(stack.years) >= 2 for stack in stacks):
        raise UsageError("no stack has two dates to pair; give more years, or same_date=True")
    root = make_dataset_folders(out)
    sidecar: dict[str, dict] = {}
    with read_env():
        pairs = _stack_pairs(stacks, pairs_per_stack, same_date, seed, query_size, sidecar, on_pair)
        records = write_split(root, name, split, pairs)
    write_text_atomic(root / f"{name}_{split}{SIDECAR_SUFFIX}", json.dumps(sidecar, indent=1))
    return len(records)


def _stack_pairs(
    stacks: Sequence[Stack],
    pairs_per_stack: int,
    same_date: bool,
    seed: int,
    query_size: int,
    sidecar: dict[str, dict],
    on_pair: Callable[[], None] | None,
) -> Iterator[tuple[str, TrainingPair]]:
    """Each stack's pairs with their query file names; each pair's place and years go into sidecar."""
    for stack in stacks:
        if len(stack.years) < 2 and not same_date:
            continue
        for k in range(pairs_per_stack):
            rng = np.random.default_rng((seed, zlib.crc32(f"{stack.place}/{stack.footprint}".encode()), k))
            ref_year = int(rng.choice(stack.years))
            others = [year for year in stack.years if year != ref_year]
            query_year = ref_year if same_date else int(rng.choice(others))
            with ExitStack() as opened:
                reference = opened.enter_context(open_reference(stack.rasters[ref_year]))
                source = opened.enter_context(open_reference(stack.rasters[query_year]))
                ground = ground_of([reference, source], None)
                block_px = int(round((ground.bounds[2] - ground.bounds[0]) / ground.units_per_px[0]))
                block = Block(ground, ground.bounds[0], ground.bounds[3])
                pair = render_pair(
                    rng, block, reference, source,
                    query_size=query_size, ref_size=block_px - 2 * MARGIN_PX, block_px=block_px,
                )
            stem = f"{stack.place}_{stack.footprint}"
            query_name = f"{stem}_{query_year}_to_{ref_year}_{k}.jpg"
            sidecar[query_name] = {"place": stack.place, "query_year": query_year, "ref_year": ref_year}
            yield query_name, replace(pair, sat_name=f"{stem}_{ref_year}.jpg")
            if on_pair is not None:
                on_pair()


def read_stack_sidecar(root: str | PathLike[str], name: str, split: str) -> dict[str, dict]:
    """Per query file name, its ``place``, ``query_year`` and ``ref_year`` (empty when the root has no sidecar)."""
    path = Path(root) / f"{name}_{split}{SIDECAR_SUFFIX}"
    return json.loads(path.read_text()) if path.is_file() else {}
