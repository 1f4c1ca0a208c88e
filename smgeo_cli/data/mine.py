"""Real training pairs mined from drone photos without annotation, in the CVOGL layout.

Two images of the same ground related by the matcher's homography (RootSIFT,
ratio test, MAGSAC, plausibility checks) give pairs for free: a reference
tile is cut from one, an object-like region is found in it (``objects``),
and the query is the view of the other around that object, with the click at
the object's most interior point mapped through the homography. Only strong
fits (at least ``MIN_INLIERS`` inliers, making up at least
``MIN_INLIER_RATIO`` of the ratio-test matches) are kept. Real parallax,
lighting and sensor differences are what synthetic warps lack; the
homography of the flat ground is only approximate where the scene is not
flat, as it is for any real pair.

Two sources of pairs:

- photos of one flight (``mine_photos``): each photo is matched with its
  nearest photos of the same split (by EXIF GPS, else by the order given);
  a strong fit gives pairs both ways (tile from either photo).
- photos and a georeferenced raster (``mine_reference``): each photo is
  matched against the raster around its EXIF GPS position when it has one on
  the raster (else the whole raster); tiles come from the raster and are
  named like ``synth``'s (``EASTING_NORTHING_EXTENT_EPSG``).

Everything is in "working pixels": photos shrunk by ``photo_scale`` (photo
pixels per working pixel) and raster areas read at the tile GSD. Tiles from
photos are named ``<photo stem>_<x>_<y>_<side>.jpg`` (top-left and side in
working pixels; a stem two photos share gets a digest of the photo's path,
``photo_labels``); query files carry the name of the photo they were cut from.
Objects are ``pairs.OBJECT_SIZE_M`` (20-300) working pixels across, so
choose ``photo_scale`` to make the objects of interest that size.

Splits are by photo: a photo and all pairs it takes part in belong to one
split, so held-out pairs share no photo with training ones. In a flight,
val and test take a run of consecutive photos (in the order given), since
consecutive photos are the ones that overlap.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from rasterio.transform import Affine

from smgeo_cli.data.cvogl import CATEGORY_RANDOM
from smgeo_cli.data.geometry import apply_homography, interior_point, tight_box, translation
from smgeo_cli.data.objects import find_objects
from smgeo_cli.data.pairs import (
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
from smgeo_cli.data.synth import ground_of, read_ground, snap_transform, tile_name
from smgeo_cli.defaults import DEFAULT_NEIGHBOURS
from smgeo_cli.errors import GeoreferenceError, InputFileError, NoDataError, UsageError
from smgeo_cli.geo.coords import GEOD
from smgeo_cli.geo.exif import read_photo_pose
from smgeo_cli.geo.raster import ReferenceRaster, open_reference, read_env
from smgeo_cli.geo.search_area import circle_window, full_window
from smgeo_cli.images import read_rgb
from smgeo_cli.matching import Features, MatchResult, describe, match_features
from smgeo_cli.matching.features import resize_to
from smgeo_cli.matching.matcher import window_corners

# A fit is strong with at least this many inliers making up at least this share of the ratio-test matches.
MIN_INLIERS = 30
MIN_INLIER_RATIO = 0.5
# The query shows the object and ground around it: its side is this many times the object's longer side.
CONTEXT = (1.5, 4.0)
# Longest side SIFT sees of a photo, and of a raster search area.
MATCH_SIDE = 1024
AREA_FEATURES = 8000
# A raster search area wider than this many tile pixels is too slow to match.
MAX_AREA_PX = 6000
CATEGORY = "mined"
# A photo of a mapping flight overlaps a few shots along its line and on the lines beside it; matching
# every two photos instead costs n^2 / 2 fits (measured 0.14 s a fit on two CPU cores: 100 minutes for 300 photos).
NEIGHBOURS = DEFAULT_NEIGHBOURS
# Working photos (and raster areas) kept in memory while pairs are cut. Pairs take their links at random,
# so holding every image would grow with the flight (9 GB for 1,000 photos at 2000 x 1500); reloading
# one costs a JPEG decode.
IMAGES_IN_MEMORY = 32


@dataclass(frozen=True)
class Link:
    """Two images related by a strong fit: tiles are cut from source, queries from target.

    load_source() gives source (H, W, 3) uint8 and source_valid (H, W) bool
    (False off the raster; all True for a photo), load_target() target
    (H', W', 3) uint8: loaded when a pair is cut, not held by the link.
    homography (3, 3) maps source pixels to target pixels; tile_name(x, y)
    names the ref_size tile whose top-left is source pixel (x, y);
    target_name is the stem of the photo the queries come from.
    """

    load_source: Callable[[], tuple[np.ndarray, np.ndarray]]
    load_target: Callable[[], np.ndarray]
    homography: np.ndarray
    tile_name: Callable[[int, int], str]
    target_name: str
    inliers: int

    @property
    def source(self) -> np.ndarray:
        return self.load_source()[0]

    @property
    def source_valid(self) -> np.ndarray:
        return self.load_source()[1]

    @property
    def target(self) -> np.ndarray:
        return self.load_target()


@dataclass(frozen=True)
class MineSummary:
    """Pairs written per split; image pairs matched and rejected for a weak fit (or none); random
    fallback boxes; the inlier counts of the strong fits."""

    counts: dict[str, int]
    tried: int
    weak: int
    fallbacks: int
    inliers: tuple[int, ...]


@dataclass(frozen=True)
class _Photo:
    """A photo's path, working size (width, height), features and ``label`` (see ``photo_labels``).

    Its pixels come from a ``_photo_cache``.
    """

    path: Path
    size: tuple[int, int]
    features: Features
    label: str


def _working_photo(path: Path, photo_scale: float) -> np.ndarray:
    """The photo shrunk by photo_scale (photo pixels per working pixel), (H, W, 3) uint8, read-only."""
    image = read_rgb(path)
    size = (max(1, round(image.shape[1] / photo_scale)), max(1, round(image.shape[0] / photo_scale)))
    image = resize_to(image, size, cv2.INTER_AREA if photo_scale > 1 else cv2.INTER_LINEAR)
    image.flags.writeable = False  # shared by every link to the photo
    return image


def _photo_cache(photo_scale: float) -> Callable[[Path], np.ndarray]:
    """Working photos by path for one mining run, the ``IMAGES_IN_MEMORY`` most recently used kept."""
    return functools.lru_cache(maxsize=IMAGES_IN_MEMORY)(functools.partial(_working_photo, photo_scale=photo_scale))


def photo_labels(paths: Sequence[Path]) -> list[str]:
    """The name each photo's tiles and queries carry: its stem, made unique when two photos share one.

    Flights are often kept one folder per flight with the camera's own
    numbering (``flight1/DJI_0001.JPG``, ``flight2/DJI_0001.JPG``), so a stem
    seen twice gets a short digest of the photo's full path: ``DJI_0001-1a2b3c4d``.
    """
    stems = Counter(path.stem for path in paths)
    return [
        path.stem if stems[path.stem] == 1 else f"{path.stem}-{zlib.crc32(str(path.resolve()).encode()):08x}"
        for path in paths
    ]


def _load_photo(path: Path, pixels: Callable[[Path], np.ndarray], label: str) -> _Photo:
    """The photo's working size and features."""
    image = pixels(path)
    return _Photo(path, (image.shape[1], image.shape[0]), describe(image, max_side=MATCH_SIDE), label)


def _strong_fit(query: Features, reference: Features, min_inliers: int) -> MatchResult | None:
    """The matcher's homography (query pixels -> reference pixels) when the fit is strong, else None.

    The whole query is the window and its centre the click, so the fit must
    also pass ``plausible`` for the photo as a whole and the reference must
    see the query's centre: the images overlap substantially.
    """
    width, height = query.image_size
    # Lowe's stricter 0.75: mined labels must be exact, and MIN_INLIER_RATIO is a share of these matches.
    whole = window_corners((0.0, 0.0, width, height))
    result = match_features(query, reference, (width / 2, height / 2), whole, ratio=0.75)
    if result is None or result.inliers < min_inliers or result.inlier_ratio < MIN_INLIER_RATIO:
        return None
    return result


def _visible(homography: np.ndarray, box: Sequence[float], size: tuple[int, int]) -> bool:
    """Whether a box (x1, y1, x2, y2) maps through the homography wholly inside an image of size (width, height)."""
    corners = apply_homography(homography, window_corners(box))
    return bool(np.isfinite(corners).all() and (corners >= 0).all() and (corners <= size).all())


def _place_tile(rng: np.random.Generator, link: Link, ref_size: int) -> tuple[int, int] | None:
    """Top-left (x, y) of a tile of the source around a random point the target sees, or None if off the source."""
    height, width = link.target.shape[:2]
    seen = apply_homography(np.linalg.inv(link.homography), rng.uniform((0, 0), (width, height))[None])[0]
    source_h, source_w = link.source.shape[:2]
    if not (np.isfinite(seen).all() and 0 <= seen[0] < source_w and 0 <= seen[1] < source_h):
        return None
    x, y = np.floor(seen - rng.uniform(0.2, 0.8, size=2) * ref_size).astype(int)
    return int(np.clip(x, 0, source_w - ref_size)), int(np.clip(y, 0, source_h - ref_size))


def _pick_object(
    rng: np.random.Generator, link: Link, ref_size: int, to_target: Callable[[int, int], np.ndarray]
) -> tuple[int, int, np.ndarray | None] | None:
    """A tile position and the mask of an object in it that the target sees whole (None: no object found).

    Tries TILE_TRIES positions; of the regions found, takes the one nearest a
    ``draw_object_size`` draw. Returns None when no position holds a tile of
    valid data.
    """
    # Photos have no GSD: at a GSD of 1, object sizes in metres are working pixels.
    size_px = object_size_range(1.0, ref_size)
    target_px = draw_object_size(rng, 1.0, ref_size)
    target_size = (link.target.shape[1], link.target.shape[0])
    placed = None
    for _ in range(TILE_TRIES):
        corner = _place_tile(rng, link, ref_size)
        if corner is None:
            continue
        x, y = corner
        if link.source_valid[y : y + ref_size, x : x + ref_size].mean() < MIN_VALID:
            continue
        placed = placed or corner
        tile = link.source[y : y + ref_size, x : x + ref_size]
        regions = [r for r in find_objects(tile, 1.0, size_px) if _visible(to_target(x, y), r.box_xyxy, target_size)]
        if regions:
            return x, y, nearest_object(regions, target_px)
    return None if placed is None else (*placed, None)


def mine_pair(rng: np.random.Generator, link: Link, *, query_size: int, ref_size: int) -> TrainingPair | None:
    """One pair from a link: a tile of the source, and the target's view around an object in it.

    The query is a square crop of the target holding the object's whole box
    (``CONTEXT`` times its size, the object anywhere in it) resized to
    query_size, so the tile-to-query homography is the link's composed with
    the tile's offset and the crop's shift and scale. None when the target
    sees no part of the source that makes a tile.
    """

    def to_target(x: int, y: int) -> np.ndarray:
        return link.homography @ translation(x, y)

    target_h, target_w = link.target.shape[:2]
    picked = _pick_object(rng, link, ref_size, to_target)
    if picked is None:
        return None
    x, y, mask = picked
    category = CATEGORY
    if mask is None:
        tile_to_target = to_target(x, y)
        mask = random_mask(rng, ref_size, 1.0, lambda box: _visible(tile_to_target, box, (target_w, target_h)))
        category = CATEGORY_RANDOM
        if mask is None:
            return None
    box = tight_box(mask)
    seen = apply_homography(to_target(x, y), window_corners(box))
    (left, top), (right, bottom) = seen.min(axis=0), seen.max(axis=0)
    # At least the box's whole-pixel span, so that a crop position holding it exists.
    span = max(math.ceil(right) - math.floor(left), math.ceil(bottom) - math.floor(top))
    side = min(max(int(span * rng.uniform(*CONTEXT)), span), target_w, target_h)
    # Any crop position that holds the whole box and stays on the target.
    crop_x = int(rng.integers(max(0, math.ceil(right) - side), max(0, min(math.floor(left), target_w - side)) + 1))
    crop_y = int(rng.integers(max(0, math.ceil(bottom) - side), max(0, min(math.floor(top), target_h - side)) + 1))
    crop = link.target[crop_y : crop_y + side, crop_x : crop_x + side]
    query = resize_to(crop, (query_size, query_size), cv2.INTER_AREA if side > query_size else cv2.INTER_LINEAR)
    # cv2.resize scales pixel edges by the size ratio, so the crop maps to the query by a pure scale.
    homography = np.diag([query_size / side, query_size / side, 1.0]) @ translation(-crop_x, -crop_y) @ to_target(x, y)
    homography = homography / homography[2, 2]
    click = apply_homography(homography, interior_point(mask)[None])[0]
    tile = np.ascontiguousarray(link.source[y : y + ref_size, x : x + ref_size])
    click_xy = (float(click[0]), float(click[1]))
    return TrainingPair(tile, query, box, click_xy, category, link.tile_name(x, y), homography, link.target_name)


def deal_photos(n_photos: int, counts: dict[str, int], rng: np.random.Generator, min_run: int) -> list[str]:
    """The split of each photo: val and test each take a run of consecutive photos, train the rest.

    A split with pairs gets at least min_run photos (2 when pairs need two
    photos of the split), and runs are in proportion to the split's pairs.
    UsageError when there are too few photos.
    """
    runs = held_out_units(n_photos, counts, min_run)
    held_out = sum(runs.values())
    if n_photos - held_out < (min_run if counts["train"] else 0):
        raise UsageError(
            f"{n_photos} photos are too few for {len(runs) + bool(counts['train'])} splits of at least {min_run} "
            "photos each; give more photos or set --val-frac/--test-frac to 0"
        )
    splits = ["train"] * n_photos
    start = int(rng.integers(0, n_photos - held_out + 1))
    for split, run in runs.items():
        splits[start : start + run] = [split] * run
        start += run
    return splits


def photo_positions(paths: Sequence[str | PathLike[str]]) -> np.ndarray:
    """(n, 2) east and north metres of each photo's EXIF GPS position from the first's, or (n, 1) its place in paths.

    Positions are geodesic distance and bearing from the first photo (an
    azimuthal equidistant map, true over a flight). The order given stands in
    unless every photo has a position: shots of one flight, given in capture
    order, overlap their neighbours in it.
    """
    poses = []
    for path in paths:
        try:
            poses.append(read_photo_pose(path))
        except InputFileError:
            poses.append(None)  # unreadable GPS: only the pairing falls back to the order
    if any(pose is None for pose in poses):
        return np.arange(len(paths), dtype=np.float64)[:, None]
    lons = np.array([pose.lon for pose in poses])
    lats = np.array([pose.lat for pose in poses])
    azimuths, _, distances = GEOD.inv(np.full_like(lons, lons[0]), np.full_like(lats, lats[0]), lons, lats)
    bearings = np.radians(azimuths)
    return np.stack([distances * np.sin(bearings), distances * np.cos(bearings)], axis=1)


def neighbour_pairs(positions: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Index pairs (a < b) where one is among the other's k nearest ``positions`` ((n, d)); all pairs if k is 0.

    Ties go to the lower index, so photos in order pair with the ones before
    them first.
    """
    n = len(positions)
    if k == 0 or k >= n - 1:
        return [(a, b) for a in range(n) for b in range(a + 1, n)]
    pairs = set()
    for a in range(n):  # a row at a time: a flight of 10,000 photos needs no n x n matrix
        distances = np.linalg.norm(positions - positions[a], axis=1)
        distances[a] = np.inf
        pairs.update((min(a, int(b)), max(a, int(b))) for b in np.argsort(distances, kind="stable")[:k])
    return sorted(pairs)


def _photo_link(
    source: _Photo,
    target: _Photo,
    pixels: Callable[[Path], np.ndarray],
    homography: np.ndarray,
    ref_size: int,
    inliers: int,
) -> Link:
    """Tiles from source, queries from target; homography maps source to target working pixels."""

    def load_source() -> tuple[np.ndarray, np.ndarray]:
        image = pixels(source.path)
        return image, np.broadcast_to(np.True_, image.shape[:2])  # a photo is valid everywhere

    return Link(
        load_source,
        lambda: pixels(target.path),
        homography / homography[2, 2],
        lambda x, y: f"{source.label}_{x}_{y}_{ref_size}.jpg",
        target.label,
        inliers,
    )


def _write(
    root: Path,
    links: dict[str, list[Link]],
    counts: dict[str, int],
    *,
    seed: int,
    query_size: int,
    ref_size: int,
    name: str,
    on_pair: Callable[[str], None] | None,
) -> int:
    """Write counts[split] pairs per split from its links; return how many boxes were random fallbacks."""

    def make_pair(rng: np.random.Generator, split: str) -> TrainingPair:
        for link in (links[split][i] for i in rng.permutation(len(links[split]))):
            pair = mine_pair(rng, link, query_size=query_size, ref_size=ref_size)
            if pair is not None:
                return pair
        raise NoDataError(f"no {split} image pair overlaps enough to cut a {ref_size} px tile; lower --ref-size")

    return write_splits(root, name, counts, seed, make_pair, on_pair)


def _check_options(
    photos: Sequence[object], n: int, val_frac: float, test_frac: float, photo_scale: float, gsd_m: float | None = None
) -> None:
    check_pair_options(n, val_frac, test_frac, gsd_m)
    if not photo_scale > 0:
        raise UsageError(f"--photo-scale must be positive photo pixels per tile pixel, got {photo_scale}")
    if not photos:
        raise UsageError("mining needs photos")


def _no_fit(split: str, tried: int, hint: str) -> NoDataError:
    return NoDataError(
        f"none of the {tried} image pairs of the {split} split has a strong fit "
        f"(>= {MIN_INLIERS} inliers, >= {MIN_INLIER_RATIO:.0%} of matches); {hint}"
    )


def mine_photos(
    photos: Sequence[str | PathLike[str]],
    out: str | PathLike[str],
    n: int,
    *,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    query_size: int = 256,
    ref_size: int = 1024,
    photo_scale: float = 1.0,
    min_inliers: int = MIN_INLIERS,
    neighbours: int = NEIGHBOURS,
    name: str = "Mined",
    on_photo: Callable[[int, int], None] | None = None,
    on_match: Callable[[int, int], None] | None = None,
    on_pair: Callable[[str], None] | None = None,
) -> MineSummary:
    """Write n pairs mined from overlapping photos of one flight in the CVOGL layout under out.

    Each photo is matched with its ``neighbours`` nearest photos of its split
    (``photo_positions``; 0: with every photo of its split), calling
    on_photo(done, total) after describing each photo and on_match(done,
    total) after each fit; pairs are spread at random over the strong fits,
    both ways. Output depends only on the inputs and seed.
    """
    _check_options(photos, n, val_frac, test_frac, photo_scale)
    if neighbours < 0:
        raise UsageError(f"--neighbours must be 0 (every pair) or more, got {neighbours}")
    if len(photos) < 2:
        raise UsageError(f"mining needs at least 2 overlapping photos, got {len(photos)}")
    counts = split_counts(n, val_frac, test_frac)
    splits = deal_photos(len(photos), counts, np.random.default_rng((seed, 0)), min_run=2)
    pixels = _photo_cache(photo_scale)
    loaded = []
    for path, label in zip(photos, photo_labels([Path(p) for p in photos])):
        loaded.append(_load_photo(Path(path), pixels, label))
        if on_photo is not None:
            on_photo(len(loaded), len(photos))
    for photo in loaded:
        if min(photo.size) < ref_size:
            raise UsageError(
                f"{photo.path} is {photo.size[0]}x{photo.size[1]} px at --photo-scale {photo_scale}, "
                f"smaller than --ref-size {ref_size}; lower --ref-size or --photo-scale"
            )
    positions = photo_positions(photos)
    candidates = []
    for split in SPLITS:
        members = [i for i, photo_split in enumerate(splits) if photo_split == split]
        candidates += [(members[a], members[b]) for a, b in neighbour_pairs(positions[members], neighbours)]
    links: dict[str, list[Link]] = {split: [] for split in SPLITS}
    tried: dict[str, int] = {split: 0 for split in SPLITS}
    for done, (a, b) in enumerate(candidates, 1):
        first, second = loaded[a], loaded[b]
        tried[splits[a]] += 1
        fit = _strong_fit(second.features, first.features, min_inliers)
        if fit is not None:
            to_first = np.linalg.inv(fit.homography)
            links[splits[a]].append(_photo_link(first, second, pixels, to_first, ref_size, fit.inliers))
            links[splits[a]].append(_photo_link(second, first, pixels, fit.homography, ref_size, fit.inliers))
        if on_match is not None:
            on_match(done, len(candidates))
    for split in SPLITS:
        if counts[split] and not links[split]:
            raise _no_fit(
                split, tried[split],
                "give overlapping photos of one flight (consecutive shots), change --photo-scale, "
                "or set --val-frac/--test-frac to 0",
            )
    fallbacks = _write(
        Path(out), links, counts, seed=seed, query_size=query_size, ref_size=ref_size, name=name, on_pair=on_pair
    )
    inliers = tuple(link.inliers for split_links in links.values() for link in split_links[::2])
    return MineSummary(counts, len(candidates), len(candidates) - len(inliers), fallbacks, inliers)


def _search_area(
    raster: ReferenceRaster, photo: _Photo, units_per_px: tuple[float, float], gsd_m: float
) -> tuple[Affine, tuple[int, int]]:
    """The raster area to match a photo against at the tile GSD: its transform (area pixels -> CRS) and size.

    Around the photo's EXIF GPS position when it lies on the raster (as far
    as the photo's own footprint reaches at the tile GSD), else the whole raster.
    """
    window = full_window(raster)
    pose = read_photo_pose(photo.path)
    if pose is not None:
        try:
            window = circle_window(raster, pose.lon, pose.lat, max(photo.size) * gsd_m)
        except GeoreferenceError:
            pass  # the GPS is a hint only: a position off the raster leaves the whole raster to search
    left, top = raster.transform @ (window.col_off, window.row_off)
    right, bottom = raster.transform @ (window.col_off + window.width, window.row_off + window.height)
    width, height = math.ceil((right - left) / units_per_px[0]), math.ceil((top - bottom) / units_per_px[1])
    if max(width, height) > MAX_AREA_PX:
        raise UsageError(
            f"{photo.path}: searching {width}x{height} tile pixels of {raster.path} is too slow; "
            f"give photos with EXIF GPS, a smaller raster or a coarser --gsd"
        )
    return snap_transform(Affine(units_per_px[0], 0.0, left, 0.0, -units_per_px[1], top), raster), (width, height)


def _area_cache(raster: ReferenceRaster) -> Callable[[Affine, tuple[int, int]], tuple[np.ndarray, np.ndarray]]:
    """Raster areas (RGB, valid mask) by transform and size for one mining run, the ``IMAGES_IN_MEMORY`` most
    recently used kept."""

    def read_area(transform: Affine, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        rgb, valid = read_ground(raster, transform, (0.0, 0.0, *size), (size[1], size[0]))
        rgb.flags.writeable = valid.flags.writeable = False  # shared by the pairs cut from it
        return rgb, valid

    return functools.lru_cache(maxsize=IMAGES_IN_MEMORY)(read_area)


def mine_reference(
    photos: Sequence[str | PathLike[str]],
    reference: str | PathLike[str],
    out: str | PathLike[str],
    n: int,
    *,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    query_size: int = 256,
    ref_size: int = 1024,
    gsd_m: float | None = None,
    photo_scale: float = 1.0,
    min_inliers: int = MIN_INLIERS,
    name: str = "Mined",
    on_match: Callable[[int, int], None] | None = None,
    on_pair: Callable[[str], None] | None = None,
) -> MineSummary:
    """Write n pairs mined from photos matched against a georeferenced raster, in the CVOGL layout under out.

    Tiles are cut from the raster at gsd_m (as in ``synth``) and named by
    their ground position; queries come from the photos, which should be
    shrunk (photo_scale) to about the tile GSD for SIFT to match them.
    on_match(done, total) is called after each photo is matched.
    """
    _check_options(photos, n, val_frac, test_frac, photo_scale, gsd_m)
    counts = split_counts(n, val_frac, test_frac)
    splits = deal_photos(len(photos), counts, np.random.default_rng((seed, 0)), min_run=1)
    links: dict[str, list[Link]] = {split: [] for split in SPLITS}
    pixels = _photo_cache(photo_scale)
    # The raster stays open until the pairs are written: their tiles are read again from it.
    with read_env(), open_reference(reference) as raster:
        ground = ground_of([raster], gsd_m)
        areas = _area_cache(raster)
        labels = photo_labels([Path(p) for p in photos])
        for done, (path, label) in enumerate(zip(photos, labels), 1):
            photo = _load_photo(Path(path), pixels, label)
            transform, size = _search_area(raster, photo, ground.units_per_px, ground.gsd_m)
            if min(size) >= ref_size:
                area, valid = areas(transform, size)
                area_features = describe(area, valid=valid, nfeatures=AREA_FEATURES)
                fit = _strong_fit(photo.features, area_features, min_inliers)
                if fit is not None:
                    to_photo = np.linalg.inv(fit.homography)
                    to_photo /= to_photo[2, 2]

                    def namer(x: int, y: int, transform: Affine = transform) -> str:
                        return tile_name(ground, transform @ Affine.translation(x, y), ref_size)

                    links[splits[done - 1]].append(
                        Link(
                            functools.partial(areas, transform, size),
                            functools.partial(pixels, photo.path),
                            to_photo,
                            namer,
                            photo.label,
                            fit.inliers,
                        )
                    )
            if on_match is not None:
                on_match(done, len(photos))
        for split in SPLITS:
            if counts[split] and not links[split]:
                raise _no_fit(
                    split, splits.count(split),
                    f"check that {reference} covers the photos, set --photo-scale so photos are near --gsd, "
                    "or set --val-frac/--test-frac to 0",
                )
        fallbacks = _write(
            Path(out), links, counts, seed=seed, query_size=query_size, ref_size=ref_size, name=name, on_pair=on_pair
        )
    inliers = tuple(link.inliers for split_links in links.values() for link in split_links)
    return MineSummary(counts, len(photos), len(photos) - len(inliers), fallbacks, inliers)
