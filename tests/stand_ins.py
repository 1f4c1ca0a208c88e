"""Stand-in tile detectors with known answers, for testing locate and batch without a trained model."""

from __future__ import annotations

import numpy as np

# Tile side in pixels and metres per pixel of the stand-ins.
TILE = 128
GSD = 0.5


class FixedBoxDetector:
    """Reports ``box`` (tile pixels) with ``score`` in every tile; counts the tiles it encodes."""

    name = "fixed"
    cache_key = "fixed"
    tile_size = TILE
    gsd_m = GSD

    def __init__(self, box=(40.25, 50.5, 70.75, 66.0), score=0.8):
        self.box, self.score = box, score
        self.encoded = 0
        self.photo_hints = []  # (heading_deg, zoom) of each query

    def encode_query(self, photo_rgb, click_xy, *, heading_deg=None, zoom=None):
        self.photo_hints.append((heading_deg, zoom))
        return tuple(click_xy)

    def encode_tiles(self, tiles_rgb):
        self.encoded += len(tiles_rgb)
        return list(tiles_rgb)

    def detect(self, query, encodings, top_k):
        return [(np.array([self.box]), np.array([self.score])) for _ in encodings]


class BrightBoxDetector(FixedBoxDetector):
    """Finds the bright pixels of each tile: the box around them, all with the same score."""

    name = "bright"
    cache_key = "bright"

    def __init__(self):
        super().__init__()
        self.found = 0

    def detect(self, query, encodings, top_k):
        results = []
        for rgb in encodings:
            rows, cols = np.nonzero(rgb.min(axis=2) > 127)
            if cols.size:
                self.found += 1
                results.append((np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]), np.array([0.9])))
            else:
                results.append((np.zeros((0, 4)), np.zeros(0)))
        return results
