"""What describing a drone photo in simulated oblique views costs the matcher, per photo and per tile.

Describes PHOTO (a full-size drone photo; default: a 4000 x 3000 crop-and-tile of
the test aerial, for a run without one) at the matcher's working size with and
without ``QUERY_TILTS``, and times ``match_features`` of each description against
one 1024 px reference tile; then what ``MatchDetector.encode_query`` costs for
a photo's first click and for another click on the same photo (its features
reused). Prints medians over ``--repeats`` runs and their ratios.

    python benchmarks/match_query_cost.py [PHOTO] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import rasterio

from smgeo_cli.images import read_rgb
from smgeo_cli.matching import MatchDetector, describe, match_features, object_outline
from smgeo_cli.matching.features import QUERY_TILTS

AERIAL = Path(__file__).parent.parent / "tests" / "data" / "geo" / "test_tiled.tif"


def median_seconds(run, repeats: int) -> tuple[float, object]:
    """Median wall time of ``run()`` over ``repeats`` calls, and its last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", nargs="?", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with rasterio.open(AERIAL) as dataset:
        aerial = np.moveaxis(dataset.read([1, 2, 3]), 0, -1)
    photo = read_rgb(args.photo) if args.photo else np.tile(aerial, (3, 4, 1))[:3000, :4000]
    tile = describe(np.ascontiguousarray(aerial[:1024, :1024]))
    click = (photo.shape[1] / 2, photo.shape[0] / 2)
    outline = object_outline(photo, click)
    print(f"photo {photo.shape[1]} x {photo.shape[0]}, tile 1024 x 1024 with {len(tile)} keypoints")
    print("| query description | keypoints | describe (s) | match per tile (s) |")
    print("|---|---|---|---|")
    rows = {}
    for name, tilts in (("plain", ()), ("with QUERY_TILTS", QUERY_TILTS)):
        describe_s, query = median_seconds(lambda: describe(photo, max_side=1024, tilts=tilts), args.repeats)
        match_s, _ = median_seconds(lambda: match_features(query, tile, click, outline), args.repeats)
        rows[name] = describe_s, match_s
        print(f"| {name} | {len(query)} | {describe_s:.3f} | {match_s:.3f} |")
    (plain_describe, plain_match), (tilted_describe, tilted_match) = rows.values()
    print(f"ratios, tilted / plain: describe {tilted_describe / plain_describe:.2f}, match {tilted_match / plain_match:.2f}")
    first_s, _ = median_seconds(lambda: MatchDetector().encode_query(photo, click), args.repeats)
    matcher = MatchDetector()
    matcher.encode_query(photo, click)
    again_s, _ = median_seconds(lambda: matcher.encode_query(photo, (click[0] / 2, click[1] / 2)), args.repeats)
    print(f"encode_query: first click {first_s:.3f} s, another click on the same photo {again_s:.3f} s "
          f"(x{first_s / again_s:.1f})")


if __name__ == "__main__":
    main()
