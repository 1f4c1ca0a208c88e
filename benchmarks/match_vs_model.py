"""The matcher against the model on one CVOGL-format split: the results table every model figure needs.

Prints a Markdown table with acc@0.25, acc@0.5, mIoU and the median time per
query of each method on the same samples (CVOGL metrics, as `smgeo eval`),
and of `--method auto` (the matcher's fit where it has one, else the model's box).
The model's time is per sample with its reference tile encoded (no cache);
the matcher's includes describing both images.

    python benchmarks/match_vs_model.py DATA_ROOT --split test --weights runs/n1/best [--limit 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from smgeo_cli.data.cvogl import CVOGLDataset
from smgeo_cli.device import resolve_device, set_cpu_threads
from smgeo_cli.evaluate import evaluate, first_found, match_boxes, predict_boxes
from smgeo_cli.model.weights import load_model


def timed(run, dataset) -> tuple:
    """``run(dataset, on_progress)`` with the seconds between progress calls, per sample."""
    stamps = [time.perf_counter()]
    counts = []

    def on_progress(n: int) -> None:
        stamps.append(time.perf_counter())
        counts.append(n)

    predictions = run(dataset, on_progress)
    per_sample = [(b - a) / n for a, b, n in zip(stamps, stamps[1:], counts)]
    return predictions, statistics.median(per_sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    set_cpu_threads()
    model = load_model(args.weights, resolve_device(args.device))
    config = model.config
    dataset = CVOGLDataset(args.root, args.split, config.query_size, config.ref_size, limit=args.limit)
    rows = []
    with torch.inference_mode():
        model_predictions, model_s = timed(lambda d, p: predict_boxes(model, d, batch_size=1, on_progress=p), dataset)
    match_predictions, match_s = timed(lambda d, p: match_boxes(d.root, d.records, on_progress=p), dataset)
    for name, predictions, seconds in (
        (f"SMGeo ({config.name}, {args.weights})", model_predictions, model_s),
        ("match (SIFT + RANSAC)", match_predictions, match_s),
        # --method auto runs the model only where matching found nothing: at most both times.
        ("auto (match, else SMGeo)", first_found(match_predictions, model_predictions), None),
    ):
        metrics = evaluate(dataset.records, predictions).metrics
        rows.append((name, metrics, seconds))

    print(f"{args.root} {args.split}: {len(dataset)} samples, device {next(model.parameters()).device}")
    print("| method | acc@0.25 | acc@0.5 | mIoU | s/query (median) |")
    print("|---|---|---|---|---|")
    for name, m, seconds in rows:
        time_cell = f"{seconds:.3f}" if seconds is not None else "at most the sum"
        scores = " | ".join(f"{100 * m[key]:.2f}" for key in ("acc@0.25", "acc@0.5", "mIoU"))
        print(f"| {name} | {scores} | {time_cell} |")


if __name__ == "__main__":
    main()
