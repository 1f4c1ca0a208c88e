"""The matcher as a per-tile detector for the locate pipeline (``--method match``).

It has the same interface as the SMGeo detector, so locating by matching
reuses the tiling, GSD handling, merging and output: the photo is described
and its object outline found once, each reference tile is described once
(and cached like the model's tile features), and every tile whose
homography is trustworthy contributes one box scored by its inliers.

Describing a photo in its simulated oblique views takes about a second, so
a detector keeps the last photo's features: more clicks on the same photo
(a batch marking several objects) and the check of hits by ``--verify``
reuse them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smgeo_cli.matching.features import QUERY_TILTS, Features, describe
from smgeo_cli.matching.matcher import match_features
from smgeo_cli.matching.window import object_outline

# Tiles as large as the paper's references: a homography needs context.
DEFAULT_TILE_SIZE = 1024
DEFAULT_GSD_M = 0.5


@dataclass(frozen=True)
class MatchQuery:
    """A described photo: its features, the clicked object's (N, 2) outline and the click, in photo pixels."""

    features: Features
    outline: np.ndarray
    click_xy: tuple[float, float]


class MatchDetector:
    """SIFT + RANSAC matching between the photo and each tile.

    ``query_max_side`` is the longest side the photo is shrunk to before SIFT;
    near the photo's footprint in tile pixels is best.
    """

    name = "match"

    def __init__(self, tile_size: int = DEFAULT_TILE_SIZE, gsd_m: float = DEFAULT_GSD_M, query_max_side: int = 1024) -> None:
        self.tile_size = tile_size
        self.gsd_m = gsd_m
        self.query_max_side = query_max_side
        self._last_photo: tuple[bytes, Features] | None = None  # (pixel digest, features)

    @property
    def cache_key(self) -> str:
        return f"match-sift-{self.tile_size}"

    def encode_query(self, photo_rgb: np.ndarray, click_xy: tuple[float, float]) -> MatchQuery:
        return MatchQuery(self.describe_photo(photo_rgb), object_outline(photo_rgb, click_xy), tuple(click_xy))

    def describe_photo(self, photo_rgb: np.ndarray) -> Features:
        """The photo's features with its simulated oblique views; the same pixels as last time reuse them."""
        pixels = np.ascontiguousarray(photo_rgb)
        hasher = hashlib.blake2b(repr(pixels.shape).encode(), digest_size=16)
        hasher.update(pixels.data)
        digest = hasher.digest()
        if self._last_photo is None or self._last_photo[0] != digest:
            self._last_photo = (digest, describe(pixels, max_side=self.query_max_side, tilts=QUERY_TILTS))
        return self._last_photo[1]

    def encode_tiles(self, tiles_rgb: np.ndarray) -> list[Features]:
        return [describe(tile) for tile in tiles_rgb]

    def detect(self, query: MatchQuery, encodings: Sequence[Features], top_k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """One box (or none: no trustworthy homography) per tile, in tile pixels."""
        found = []
        for tile_features in encodings:
            match = match_features(query.features, tile_features, query.click_xy, query.outline)
            if match is None:
                found.append((np.empty((0, 4)), np.empty(0)))
            else:
                found.append((np.array([match.box]), np.array([match.score])))
        return found
