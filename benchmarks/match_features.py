"""The matcher's features compared on CVOGL-format test sets: fits, acc@0.25, acc@0.5, centre-in-box, time.

For each ROOT and each ``--features`` choice, every sample's photo is
matched against its own reference tile exactly as ``smgeo eval --method
match`` does (the photo at ``--headings`` turns for learned features) and a
Markdown table row is printed per group: the whole set, and, for pair sets
written by ``smgeo_cli.data.stacks`` (a ``*_stacks.json`` sidecar), each
place with the query and reference from different years or the same year.
``fits`` is the share of samples given a box; ``centre in box`` the share
whose box centre lies inside the true box (found, whatever the box size);
time is the median per sample, both images read and described (a chain's is the
sum of the kinds it ran).

    python benchmarks/match_features.py ROOT [ROOT ...] [--features sift,xfeat,sift+xfeat] [--headings 4]

``--make-stacks FOLDER OUT`` first writes such a set from ``<place>_<year>_<n>.tif``
date stacks (one pair per stack, reference and query of different years;
``--same-date`` for the comparison set).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from smgeo_cli.data.cvogl import find_annotation, load_records
from smgeo_cli.data.stacks import find_stacks, read_stack_sidecar, write_stack_pairs
from smgeo_cli.device import set_cpu_threads
from smgeo_cli.evaluate import BoxPredictions, match_boxes
from smgeo_cli.metrics import cvogl_iou


def run(root: Path, records, kind: str, headings: int) -> tuple[BoxPredictions, list[float]]:
    """``smgeo eval --method match``'s boxes (zeros where no fit) with one kind of features, and per-sample
    seconds (both images read and described: the JPEG reads are milliseconds of them)."""
    stamps = [time.perf_counter()]
    found = match_boxes(root, records, kind, on_progress=lambda _: stamps.append(time.perf_counter()), headings=headings)
    return found, np.diff(stamps).tolist()


def chained(results: dict[str, tuple[BoxPredictions, list[float]]], features: str) -> tuple[np.ndarray, list[float]]:
    """Boxes and seconds of a ``--features`` choice from its kinds' own runs.

    A chain such as ``sift+xfeat`` takes the first kind's fit where it has
    one, else the next kind's, and costs the kinds it ran: on one tile this
    is exactly what the locate pipeline does, without running each kind twice.
    """
    kinds = features.split("+")
    boxes, seconds = results[kinds[0]][0].boxes.copy(), list(results[kinds[0]][1])
    for kind in kinds[1:]:
        missing = boxes[:, 2] <= boxes[:, 0]
        boxes[missing] = results[kind][0].boxes[missing]
        seconds = [s + (extra if miss else 0.0) for s, extra, miss in zip(seconds, results[kind][1], missing)]
    return boxes, seconds


def centre_in_box(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) bool: the box exists and its centre lies in the true box."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    found = boxes[:, 2] > boxes[:, 0]
    return found & (truth[:, 0] <= cx) & (cx <= truth[:, 2]) & (truth[:, 1] <= cy) & (cy <= truth[:, 3])


def groups_of(root: Path, records, split: str) -> dict[str, list[int]]:
    """Sample indexes per group: "all", then "<place>, other year" / "<place>, same year" from a stacks sidecar."""
    name = find_annotation(root, split).stem.rsplit("_", 1)[0]
    sidecar = read_stack_sidecar(root, name, split)
    groups: dict[str, list[int]] = defaultdict(list)
    groups["all"] = list(range(len(records)))
    for index, record in enumerate(records):
        if (pair := sidecar.get(record.query_name)) is not None:
            gap = "same year" if pair["query_year"] == pair["ref_year"] else "other year"
            groups[f"{pair['place']}, {gap}"].append(index)
    return dict(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--features", default="sift,xfeat,sift+xfeat", help="comma-separated --features choices")
    parser.add_argument("--headings", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--make-stacks", nargs=2, type=Path, metavar=("FOLDER", "OUT"))
    parser.add_argument("--same-date", action="store_true")
    args = parser.parse_args()
    set_cpu_threads()
    if args.make_stacks:
        folder, out = args.make_stacks
        count = write_stack_pairs(find_stacks([folder]), out, same_date=args.same_date, seed=7, name="NAIPStacks")
        print(f"wrote {count} pairs to {out}")
    print("| set | group | features | n | fits | acc@0.25 | acc@0.5 | centre in box | s/sample (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for root in args.roots:
        records = load_records(root, args.split)[: args.limit]
        truth = np.array([r.box_xyxy for r in records], dtype=np.float64)
        groups = groups_of(root, records, args.split)
        choices = args.features.split(",")
        results = {kind: run(root, records, kind, args.headings) for kind in dict.fromkeys("+".join(choices).split("+"))}
        sizes = next(iter(results.values()))[0].image_sizes
        for features in choices:
            boxes, seconds = chained(results, features)
            ious = cvogl_iou(boxes, truth, sizes)
            found = centre_in_box(boxes, truth)
            for group, indexes in groups.items():
                fits = boxes[indexes, 2] > boxes[indexes, 0]
                cells = [100 * fits.mean(), 100 * (ious[indexes] > 0.25).mean(), 100 * (ious[indexes] > 0.5).mean()]
                cells.append(100 * found[indexes].mean())
                numbers = " | ".join(f"{v:.1f}" for v in cells)
                time_s = statistics.median(seconds[i] for i in indexes)
                print(f"| {root.name} | {group} | {features} | {len(indexes)} | {numbers} | {time_s:.3f} |", flush=True)

if __name__ == "__main__":
    main()
