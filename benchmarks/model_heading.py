"""The model with the photo as it is against the photo turned north-up from its true heading, as `locate` does
when the metadata gives one.

On a CVOGL-format set with homography sidecars (``smgeo synth``, the stacks
pairs of ``scripts/bundled/stack_pairs.py``), each pair's heading (the
bearing the view's top faces) is read off its homography at the object; the
query goes through ``SMGeoDetector.encode_query`` with and without it, the
reference tile through ``encode_tiles``. Prints acc@0.25 and acc@0.5 of the
``object`` pairs each way (CVOGL IoU in the tile's file pixels).

    python benchmarks/model_heading.py ROOT [--split test] [--weights models/smgeo-nano-bundled]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from smgeo_cli.data.cvogl import QUERY_DIR, SATELLITE_DIR, load_records, read_homographies
from smgeo_cli.data.transforms import resize_with_points
from smgeo_cli.device import resolve_device, set_cpu_threads
from smgeo_cli.images import read_rgb
from smgeo_cli.locate import SMGeoDetector
from smgeo_cli.metrics import cvogl_iou
from smgeo_cli.model.weights import load_model, weights_folder


def heading_at(tile_to_query: np.ndarray, point: np.ndarray) -> float:
    """Bearing (degrees clockwise from north) the query's top faces, near ``point`` (x, y) of a north-up tile."""
    ends = np.array([[point[0], point[1], 1.0], [point[0], point[1] - 10.0, 1.0]]) @ tile_to_query.T
    north = ends[1, :2] / ends[1, 2] - ends[0, :2] / ends[0, 2]
    # North points this far clockwise from the query's up; the query's top faces as far the other way.
    return -math.degrees(math.atan2(north[0], -north[1])) % 360.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--weights", type=Path, default=None, help="Weights folder (default: the bundled model).")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    set_cpu_threads()
    detector = SMGeoDetector(load_model(weights_folder(args.weights), resolve_device(args.device)))
    homographies = read_homographies(args.root, args.split)
    ious: dict[str, list[float]] = {"as it is": [], "north-up": []}
    for record in load_records(args.root, args.split):
        if record.category != "object" or record.query_name not in homographies:
            continue
        photo = read_rgb(f"{args.root}/{QUERY_DIR}/{record.query_name}")
        tile = read_rgb(f"{args.root}/{SATELLITE_DIR}/{record.sat_name}")
        box = np.asarray(record.box_xyxy, dtype=np.float64)
        heading = heading_at(homographies[record.query_name], (box[:2] + box[2:]) / 2)
        tile_in, box_in = resize_with_points(tile, detector.tile_size, box)
        encoding = detector.encode_tiles(tile_in[None])
        for name, heading_deg in (("as it is", None), ("north-up", heading)):
            query = detector.encode_query(photo, record.click_xy, heading_deg=heading_deg)
            (boxes, _), = detector.detect(query, encoding, top_k=1)
            size = np.array([[detector.tile_size] * 2], dtype=np.float64)
            ious[name].append(float(cvogl_iou(boxes[:1], box_in[None], size)[0]))
    print(f"{args.root} {args.split}: {len(ious['as it is'])} object pairs")
    print("| query | acc@0.25 | acc@0.5 |")
    print("|---|---|---|")
    for name, values in ious.items():
        values = np.asarray(values)
        print(f"| {name} | {100 * (values > 0.25).mean():.1f} | {100 * (values > 0.5).mean():.1f} |")


if __name__ == "__main__":
    main()
