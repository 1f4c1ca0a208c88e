"""Score smgeo's answers on the example against the true boxes in truth.csv.

Reads a GeoJSON written by ``smgeo locate -o`` or ``smgeo batch -o`` and, for
each photo it answers, compares the best-ranked hit's box (``bbox_px``, in
pan1.tif pixels) with the true box: IoU, and whether it counts as found
(IoU > 0.5, CVOGL's acc@0.5).

    python examples/score.py runs/example/dark_roof_building.geojson
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

TRUTH = Path(__file__).with_name("data") / "truth.csv"


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("geojson", type=Path, nargs="+", help="locate or batch output")
    args = parser.parse_args()
    with open(TRUTH, newline="") as handle:
        truth = {row["image"]: [float(row[k]) for k in ("x1", "y1", "x2", "y2")] for row in csv.DictReader(handle)}
    best: dict[str, dict] = {}
    for path in args.geojson:
        try:
            features = json.loads(path.read_text())["features"]
        except (OSError, ValueError, KeyError) as err:
            parser.error(f"{path}: not a readable locate/batch GeoJSON ({type(err).__name__}: {err})")
        for feature in features:
            properties = feature["properties"]
            photo = Path(str(properties["query"])).name
            if photo in truth and properties.get("rank", 1) == 1:
                best[photo] = properties
    found = 0
    for photo, true_box in truth.items():
        if photo not in best:
            continue
        overlap = iou(best[photo]["bbox_px"], true_box)
        found += overlap > 0.5
        verdict = "found" if overlap > 0.5 else "missed"
        print(f"{photo:26s} IoU {overlap:.2f}  {verdict}  (score {best[photo]['score']:.2f})")
    # A photo of the run without a hit is absent from its output, like a photo the run did not have.
    print(f"{len(best)} of the {len(truth)} example photos have a hit here; {found} found (IoU > 0.5)")


if __name__ == "__main__":
    main()
