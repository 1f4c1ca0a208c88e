"""The matcher as a per-tile detector for the locate pipeline (``--method match``).

It has the same interface as the SMGeo detector, so locating by matching
reuses the tiling, GSD handling, merging and output: the photo is described
and its object outline found once, each reference tile is described once
(and cached like the model's tile features), and every tile whose
homography is trustworthy contributes one box scored by its inliers.

One detector matches with one kind of features: ``sift`` (RootSIFT, ratio
test; rotation and scale invariant, and the photo is also described in
simulated oblique views) or ``xfeat`` (learned, matched by LighterGlue; the
photo is described in ``views``: turned north-up when its heading is known,
else at several headings). ``matchers("sift+xfeat")`` chains them: the
locate pipeline takes the first one that finds the object, as ``auto`` takes
the matcher before the model.

A photo's description and its homography fit with each tile do not depend on
the click, so a detector keeps them for the last photo: more clicks on the
same photo (a batch marking several objects) only carry the new click and
outline through the fits already made, and ``--verify`` reuses the
description.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smgeo_cli.defaults import DEFAULT_FEATURES, DEFAULT_HEADINGS, FEATURE_CHOICES

from . import learned, networks
from .features import KIND as SIFT
from .features import QUERY_TILTS, Features, describe
from .matcher import HomographyFit, MatchResult, correspondences, fit_homography, place
from .views import PhotoView, headings, photo_views
from .window import object_outline

# Tiles as large as the paper's references: a homography needs context.
DEFAULT_TILE_SIZE = 1024
DEFAULT_GSD_M = 0.5
FEATURE_KINDS = (SIFT, learned.KIND)
# Fits kept for the last photo: a batch's clicks on one photo search the same tiles.
MAX_CACHED_FITS = 4096


def pixel_digest(image: np.ndarray) -> bytes:
    """A 16-byte digest of an array's shape and pixels: the identity of a photo or tile."""
    pixels = np.ascontiguousarray(image)
    hasher = hashlib.blake2b(repr((pixels.shape, pixels.dtype.str)).encode(), digest_size=16)
    hasher.update(pixels.data)
    return hasher.digest()


@dataclass(frozen=True)
class TileFeatures:
    """A described reference tile: its features and the digest of its pixels (the key of fits made with it)."""

    features: Features
    digest: bytes

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The tile as named arrays, for the disk cache (``from_arrays`` reads them back)."""
        features = self.features
        return {
            "keypoints": features.keypoints,
            "descriptors": features.descriptors,
            "image_size": np.asarray(features.image_size, dtype=np.int64),
            "work_scale": np.asarray(features.work_scale, dtype=np.float64),
            "kind": np.asarray(features.kind),
            "digest": np.frombuffer(self.digest, dtype=np.uint8),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TileFeatures:
        features = Features(
            keypoints=np.asarray(arrays["keypoints"], dtype=np.float64),
            descriptors=np.asarray(arrays["descriptors"], dtype=np.float32),
            image_size=tuple(int(v) for v in arrays["image_size"]),
            work_scale=tuple(float(v) for v in arrays["work_scale"]),
            kind=str(arrays["kind"]),
        )
        return cls(features, bytes(np.asarray(arrays["digest"], dtype=np.uint8)))


@dataclass(frozen=True)
class MatchQuery:
    """A described photo: its views, the clicked object's (N, 2) outline and the click, in photo pixels.

    ``key`` identifies the photo and how its views were made (kind, headings,
    zoom): fits are cached under it.
    """

    views: tuple[PhotoView, ...]
    outline: np.ndarray
    click_xy: tuple[float, float]
    key: bytes


class MatchDetector:
    """Local-feature matching between the photo and each tile, a homography per tile.

    Args:
        features: ``"sift"`` or ``"xfeat"`` (see the module's docstring).
        tile_size: tile side, pixels.
        gsd_m: tile ground metres per pixel unless the caller sets another.
        query_max_side: longest side the photo is shrunk to for SIFT (near the
            photo's footprint in tile pixels is best).
        headings: turns tried for learned features when the photo's heading is unknown.
        device: where the learned networks run ("cpu", "cuda").
    """

    name = "match"

    def __init__(
        self,
        features: str = SIFT,
        tile_size: int = DEFAULT_TILE_SIZE,
        gsd_m: float = DEFAULT_GSD_M,
        query_max_side: int = 1024,
        headings: int = DEFAULT_HEADINGS,
        device: str = "cpu",
    ) -> None:
        if features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {', '.join(FEATURE_KINDS)}, got {features!r}")
        self.features = features
        self.tile_size = tile_size
        self.gsd_m = gsd_m
        self.query_max_side = query_max_side
        self.headings = headings
        self.device = str(device)
        self._last_photo: tuple[bytes, tuple[PhotoView, ...]] | None = None
        self._fits: OrderedDict[tuple[bytes, int, bytes], HomographyFit | None] = OrderedDict()

    @property
    def cache_key(self) -> str:
        version = f"-{networks.weights_version()}" if self.features != SIFT else ""
        return f"match-{self.features}{version}-{self.tile_size}"

    @property
    def run_key(self) -> str:
        """``cache_key`` and what else changes the answers: the headings tried by learned features."""
        return self.cache_key if self.features == SIFT else f"{self.cache_key}-headings{self.headings}"

    def _describe(self, image: np.ndarray, **options) -> Features:
        if self.features == SIFT:
            return describe(image, **options)
        return learned.describe_xfeat(image, device=self.device, **options)

    def describe_photo(
        self, photo_rgb: np.ndarray, heading_deg: float | None = None, zoom: float | None = None
    ) -> tuple[bytes, tuple[PhotoView, ...]]:
        """The photo's key and views; the same pixels, heading and zoom as last time reuse them.

        SIFT describes one view, the photo itself with its simulated oblique
        views. Learned features describe the photo turned north-up (clockwise
        by ``heading_deg``, the bearing its top faces) or, without a heading,
        at each of ``headings`` turns, resampled by ``zoom`` (tile pixels per
        photo pixel) when known.
        """
        if self.features == SIFT:
            recipe = (SIFT, self.query_max_side)
        else:
            turns = headings(self.headings) if heading_deg is None else (heading_deg % 360.0,)
            recipe = (self.features, turns, None if zoom is None else round(zoom, 6))
        key = pixel_digest(photo_rgb) + repr(recipe).encode()
        if self._last_photo is None or self._last_photo[0] != key:
            if self.features == SIFT:
                features = describe(photo_rgb, max_side=self.query_max_side, tilts=QUERY_TILTS)
                views = (PhotoView(0.0, features, np.eye(3)),)
            else:
                views = photo_views(photo_rgb, self._describe, turns, zoom)
            self._last_photo = (key, views)
            self._fits.clear()
        return self._last_photo

    def encode_query(
        self,
        photo_rgb: np.ndarray,
        click_xy: tuple[float, float],
        *,
        heading_deg: float | None = None,
        zoom: float | None = None,
    ) -> MatchQuery:
        """The described photo with the clicked object's outline (see ``describe_photo``)."""
        key, views = self.describe_photo(photo_rgb, heading_deg, zoom)
        return MatchQuery(views, object_outline(photo_rgb, click_xy), tuple(click_xy), key)

    def describe_tile(self, tile_rgb: np.ndarray, valid: np.ndarray | None = None) -> TileFeatures:
        """A reference image's features (none within a few pixels of ``valid``'s False: no-data) and digest."""
        return TileFeatures(self._describe(tile_rgb, valid=valid), pixel_digest(tile_rgb))

    def encode_tiles(self, tiles_rgb: np.ndarray) -> list[TileFeatures]:
        return [self.describe_tile(tile) for tile in tiles_rgb]

    def _fit(self, query: MatchQuery, index: int, tile: TileFeatures) -> HomographyFit | None:
        """The homography of view ``index`` with the tile, in photo pixels; computed once per photo and tile."""
        key = (query.key, index, tile.digest)
        if key not in self._fits:
            view = query.views[index]
            source, target = correspondences(view.features, tile.features, device=self.device)
            self._fits[key] = fit_homography(view.to_photo(source), target)
            while len(self._fits) > MAX_CACHED_FITS:
                self._fits.popitem(last=False)
        return self._fits[key]

    def match(self, query: MatchQuery, tile: TileFeatures) -> MatchResult | None:
        """The best trustworthy match of the query's views with one tile (highest score), or None."""
        best = None
        for index, view in enumerate(query.views):
            found = place(self._fit(query, index, tile), query.click_xy, query.outline, view.scale, tile.features)
            if found is not None and (best is None or found.score > best.score):
                best = found
        return best

    def detect(self, query: MatchQuery, encodings: Sequence[TileFeatures], top_k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """One box (or none: no trustworthy homography) per tile, in tile pixels."""
        found = []
        for tile in encodings:
            match = self.match(query, tile)
            if match is None:
                found.append((np.empty((0, 4)), np.empty(0)))
            else:
                found.append((np.array([match.box]), np.array([match.score])))
        return found


def matchers(features: str = DEFAULT_FEATURES, **options) -> list[MatchDetector]:
    """The detectors ``--features`` names, in the order they are tried: ``"sift+xfeat"`` gives SIFT, then XFeat."""
    if features not in FEATURE_CHOICES:
        raise ValueError(f"features must be one of {', '.join(FEATURE_CHOICES)}, got {features!r}")
    return [MatchDetector(kind, **options) for kind in features.split("+")]


def first_match(
    chain: Sequence[MatchDetector],
    photo_rgb: np.ndarray,
    click_xy: tuple[float, float],
    reference_rgb: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    heading_deg: float | None = None,
    zoom: float | None = None,
) -> MatchResult | None:
    """The match of the first of ``chain`` that fits the photo to one reference image (``valid`` False on
    no-data), or None: what the locate pipeline does over many tiles, for a single one."""
    for matcher in chain:
        query = matcher.encode_query(photo_rgb, click_xy, heading_deg=heading_deg, zoom=zoom)
        found = matcher.match(query, matcher.describe_tile(reference_rgb, valid))
        if found is not None:
            return found
    return None

