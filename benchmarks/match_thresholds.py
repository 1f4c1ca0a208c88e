"""The matcher's ratio test and inlier floor: fits it finds against fits on ground the photo does not show.

For each setting RATIO/MIN_INLIERS, on one CVOGL-format split: how many
samples get a fit, how many of those put the click inside the true box, and
acc@0.5 of the fits' boxes over all samples; then, pairing each photo with
``--negatives`` tiles of other ground (tiles named ``EASTING_NORTHING_EXTENT_EPSG``,
as ``smgeo synth`` writes them, whose squares do not overlap the photo's own
tile), how many of those pairs get a fit: each one would be a wrong hit.
Every image is described once; only the matching is repeated per setting.

    python benchmarks/match_thresholds.py DATA_ROOT --split test [--negatives 10] [--settings 0.75/12,0.8/8]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from smgeo_cli.data.cvogl import QUERY_DIR, SATELLITE_DIR, load_records
from smgeo_cli.images import read_rgb
from smgeo_cli.matching import MatchDetector, describe, match_features
from smgeo_cli.matching.matcher import MIN_INLIERS, RATIO
from smgeo_cli.metrics import cvogl_iou


def tile_square(name: str) -> tuple[float, float, float] | None:
    """(easting, northing, extent) of a tile named ``EASTING_NORTHING_EXTENT_EPSG.jpg``; None for other names."""
    try:
        easting, northing, extent = (float(part) for part in name.split("_")[:3])
    except ValueError:
        return None
    return easting, northing, extent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--negatives", type=int, default=10, help="tiles of other ground per photo")
    parser.add_argument("--settings", default=f"0.75/12,0.8/12,{RATIO}/{MIN_INLIERS},0.85/8,0.9/8")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = [(float(ratio), int(floor)) for ratio, floor in (s.split("/") for s in args.settings.split(","))]

    records = load_records(args.root, args.split)
    squares = {r.sat_name: tile_square(r.sat_name) for r in records}
    if any(square is None for square in squares.values()):
        parser.error(f"{args.root}: tiles are not named EASTING_NORTHING_EXTENT_EPSG, so other ground is unknown")
    tiles: dict = {}

    def tile(name: str):
        if name not in tiles:
            tiles[name] = describe(read_rgb(f"{args.root}/{SATELLITE_DIR}/{name}"))
        return tiles[name]

    rng = np.random.default_rng(args.seed)
    names = sorted(squares)
    boxes = {s: np.zeros((len(records), 4)) for s in settings}
    on_object = {s: 0 for s in settings}
    false_fits = {s: 0 for s in settings}
    pairs = 0
    for i, record in enumerate(records):
        photo = read_rgb(f"{args.root}/{QUERY_DIR}/{record.query_name}")
        described = MatchDetector().encode_query(photo, record.click_xy)
        query, outline = described.features, described.outline
        x, y, extent = squares[record.sat_name]
        # Squares that do not overlap: centres further apart, on some axis, than half their extents summed.
        others = [
            n for n in names if max(abs(squares[n][0] - x), abs(squares[n][1] - y)) > (extent + squares[n][2]) / 2
        ]
        negatives = rng.choice(others, size=min(args.negatives, len(others)), replace=False)
        pairs += len(negatives)
        for ratio, floor in settings:
            fit = match_features(query, tile(record.sat_name), record.click_xy, outline, ratio=ratio, min_inliers=floor)
            if fit is not None:
                boxes[ratio, floor][i] = fit.box
                x1, y1, x2, y2 = record.box_xyxy
                on_object[ratio, floor] += x1 <= fit.click_xy[0] <= x2 and y1 <= fit.click_xy[1] <= y2
            for name in negatives:
                found = match_features(query, tile(name), record.click_xy, outline, ratio=ratio, min_inliers=floor)
                false_fits[ratio, floor] += found is not None
        print(f"\r{i + 1}/{len(records)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{args.root} {args.split}: {len(records)} samples, {pairs} pairs of a photo and other ground")
    truth = np.array([r.box_xyxy for r in records])
    sizes = np.array([tile(r.sat_name).image_size for r in records])
    print("| ratio / min inliers | fits | on the object | acc@0.5 (%) | fits on other ground |")
    print("|---|---|---|---|---|")
    for setting in settings:
        fits = int((boxes[setting][:, 2] > boxes[setting][:, 0]).sum())
        acc = 100 * (cvogl_iou(boxes[setting], truth, sizes) >= 0.5).mean()
        mark = " (default)" if setting == (RATIO, MIN_INLIERS) else ""
        ratio, floor = setting
        print(f"| {ratio} / {floor}{mark} | {fits} | {on_object[setting]} | {acc:.2f} | {false_fits[setting]} |")


if __name__ == "__main__":
    main()
