"""The matcher against models on CVOGL-format splits, per place: the results table every model figure needs.

For each dataset root (one held-out place, or several told apart by the
``_stacks.json`` sidecar that cross-date sets carry) prints a Markdown table:
per place and method, the number of pairs, acc@0.25, acc@0.5 and mIoU over
all pairs, acc@0.5 over the ``object`` pairs (an object-like region; the
rest carry a random box), the median time per query, and for each model how
often moving the click off the object moves its box (the click is used),
and last the mean over the sets of each method's acc@0.5 on object pairs.
``auto`` is the matcher's fit where it has one, else the model's box, as
``--method auto``. The matcher runs once per root, whatever the number of models.

    python benchmarks/match_vs_model.py ROOT [ROOT...] --weights models/smgeo-nano-bundled [RUN/last ...] \
        [--split test] [--features sift+xfeat] [--limit 200] [--match-cache DIR]

The model's time is per sample in batches of ``--batch-size`` with its reference
tiles encoded (no cache); the matcher's includes describing both images.
``--match-cache DIR`` keeps the matcher's boxes per root, features and limit,
so tables of new weights on the same sets do not match them again.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from smgeo_cli.data.cvogl import CVOGLDataset, find_annotation
from smgeo_cli.data.stacks import read_stack_sidecar
from smgeo_cli.defaults import DEFAULT_FEATURES
from smgeo_cli.device import resolve_device, set_cpu_threads
from smgeo_cli.evaluate import BoxPredictions, evaluate, first_found, match_boxes, predict_boxes
from smgeo_cli.metrics import cvogl_iou
from smgeo_cli.model.weights import load_model

# A box "moved" when it overlaps its position before the click moved by less than this IoU.
MOVED_IOU = 0.5
BOX_FIELDS = ("boxes", "scores", "indexes", "image_sizes")


class MovedClicks(Dataset):
    """The samples of ``dataset`` with the click moved half the query's side (wrapping, kept 10 % in from the edges),
    which takes it off the clicked object in all but the largest views of one."""

    def __init__(self, dataset: CVOGLDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        side = sample["query"].shape[-1]
        moved = (sample["click"] + side / 2) % side
        sample["click"] = moved.clamp(0.1 * side, 0.9 * side)
        return sample


def timed(run: Callable, dataset) -> tuple[BoxPredictions, float]:
    """``run(dataset, on_progress)`` and the median seconds per sample between progress calls."""
    stamps, counts = [time.perf_counter()], []

    def on_progress(n: int) -> None:
        stamps.append(time.perf_counter())
        counts.append(n)

    predictions = run(dataset, on_progress)
    per_sample = [(b - a) / n for a, b, n in zip(stamps, stamps[1:], counts)]
    return predictions, statistics.median(per_sample)


def cached_match_boxes(dataset: CVOGLDataset, features: str, cache: Path | None) -> tuple[BoxPredictions, float]:
    """The matcher's boxes and median s/query, from ``cache`` when it holds them for this root, features and size."""
    path = cache / f"{Path(dataset.root).resolve().name}_{features}_{len(dataset)}.npz" if cache else None
    if path is not None and path.is_file():
        saved = np.load(path)
        return BoxPredictions(*(saved[name] for name in BOX_FIELDS)), float(saved["seconds"])
    predictions, seconds = timed(lambda d, p: match_boxes(d.root, d.records, features, on_progress=p), dataset)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, seconds=seconds, **{name: getattr(predictions, name) for name in BOX_FIELDS})
    return predictions, seconds


def places_of(dataset: CVOGLDataset, split: str) -> dict[str, np.ndarray]:
    """Record indexes per place: ``ROOT_NAME/PLACE`` for the sidecar's places, else the whole root under its folder name."""
    root = Path(dataset.root)
    sidecar = read_stack_sidecar(root, find_annotation(root, split).stem.removesuffix(f"_{split}"), split)
    names = [f"{root.name}/{sidecar[r.query_name]['place']}" if r.query_name in sidecar else root.name for r in dataset.records]
    return {place: np.flatnonzero(np.asarray(names) == place) for place in sorted(set(names))}


def subset(predictions: BoxPredictions, keep: np.ndarray) -> BoxPredictions:
    return BoxPredictions(*(getattr(predictions, name)[keep] for name in BOX_FIELDS))


def object_score(dataset: CVOGLDataset, predictions: BoxPredictions) -> float:
    """acc@0.5 on the set's ``object`` pairs, or on all its pairs when it has none (mined pairs)."""
    metrics = evaluate(dataset.records, predictions).metrics
    return metrics["per_category"].get("object", metrics)["acc@0.5"]


def row(name: str, dataset: CVOGLDataset, predictions: BoxPredictions, seconds: float | None, moved: str) -> str:
    metrics = evaluate(dataset.records, predictions).metrics
    objects = metrics["per_category"].get("object")
    scores = " | ".join(f"{100 * metrics[key]:.1f}" for key in ("acc@0.25", "acc@0.5", "mIoU"))
    object_cell = f"{100 * objects['acc@0.5']:.1f} ({objects['n']})" if objects else "-"
    time_cell = f"{seconds:.3f}" if seconds is not None else "-"
    return f"| {name} | {metrics['n']} | {scores} | {object_cell} | {time_cell} | {moved} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--weights", nargs="+", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--features", default=DEFAULT_FEATURES)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--match-cache", type=Path, default=None)
    args = parser.parse_args()

    set_cpu_threads()
    device = resolve_device(args.device)
    models = {weights: load_model(weights, device) for weights in args.weights}
    config = next(iter(models.values())).config
    print("| place | method | pairs | acc@0.25 | acc@0.5 | mIoU | acc@0.5 objects (n) | s/query | click moves box % |")
    print("|---|---|---|---|---|---|---|---|---|")
    set_scores: dict[str, list[float]] = {}
    for root in args.roots:
        dataset = CVOGLDataset(root, args.split, config.query_size, config.ref_size, limit=args.limit)
        match, match_s = cached_match_boxes(dataset, args.features, args.match_cache)
        results = []
        for weights, model in models.items():
            with torch.inference_mode():
                boxes, seconds = timed(lambda d, p: predict_boxes(model, d, args.batch_size, on_progress=p), dataset)
                moved_boxes = predict_boxes(model, MovedClicks(dataset), args.batch_size)
            overlap = cvogl_iou(boxes.boxes, moved_boxes.boxes, boxes.image_sizes)
            results.append((weights, boxes, seconds, overlap < MOVED_IOU))
        for place, keep in places_of(dataset, args.split).items():
            print(row(f"{place} | match ({args.features})", dataset, subset(match, keep), match_s, "-"))
            for weights, boxes, seconds, moved in results:
                moved_cell = f"{100 * moved[keep].mean():.0f}"
                print(row(f"{place} | {weights}", dataset, subset(boxes, keep), seconds, moved_cell))
                print(row(f"{place} | auto ({weights})", dataset, subset(first_found(match, boxes), keep), None, "-"))
        methods = [("match", match)]
        for weights, boxes, _, _ in results:
            methods += [(weights, boxes), (f"auto ({weights})", first_found(match, boxes))]
        for name, predictions in methods:
            set_scores.setdefault(name, []).append(object_score(dataset, predictions))
    print()
    print(f"Mean over the {len(args.roots)} sets of acc@0.5 on object pairs (all pairs where a set has none):")
    for name, scores in set_scores.items():
        print(f"- {name}: {100 * np.mean(scores):.1f}")


if __name__ == "__main__":
    main()
