"""Evaluation on a CVOGL-format split: one top box per sample, CVOGL metrics.

Both methods produce :class:`BoxPredictions` for the same dataset, so a
results table can hold the model and the matcher side by side, and
:func:`first_found` combines them as ``--method auto`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from smgeo_cli.data.cvogl import QUERY_DIR, SATELLITE_DIR, CVOGLDataset, CVOGLRecord
from smgeo_cli.defaults import DEFAULT_FEATURES, DEFAULT_HEADINGS
from smgeo_cli.images import read_rgb
from smgeo_cli.matching.detector import first_match, matchers
from smgeo_cli.metrics import cvogl_iou, summarize
from smgeo_cli.model.smgeo import SMGeo


@dataclass
class BoxPredictions:
    """The top box of each sample, in the satellite image's own pixels (as stored on disk).

    boxes: (N, 4) x1, y1, x2, y2; scores: (N,); indexes: (N,) into the
    dataset's records; image_sizes: (N, 2) satellite (width, height).
    """

    boxes: np.ndarray
    scores: np.ndarray
    indexes: np.ndarray
    image_sizes: np.ndarray


@dataclass
class EvalResult:
    """``metrics`` as :func:`smgeo_cli.metrics.summarize`; one prediction dict per sample."""

    metrics: dict
    predictions: list[dict]


@torch.inference_mode()
def predict_boxes(
    model: SMGeo,
    dataset: CVOGLDataset,
    batch_size: int = 8,
    num_workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> BoxPredictions:
    """SMGeo's top box per sample; ``on_progress`` gets the number of samples done after each batch."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    boxes, scores, indexes, sizes = [], [], [], []
    for batch in loader:
        top_boxes, top_scores = model.detect(
            batch["query"].to(device), batch["click"].to(device), reference=batch["ref"].to(device), top_k=1
        )
        scale = batch["ref_scale"].to(device).repeat(1, 2)  # (sx, sy, sx, sy)
        boxes.append((top_boxes[:, 0] * scale).cpu().numpy())
        scores.append(top_scores[:, 0].cpu().numpy())
        indexes.append(batch["index"].numpy())
        sizes.append(np.rint((batch["ref_scale"] * batch["ref"].shape[-1]).numpy()))
        if on_progress:
            on_progress(len(batch["index"]))
    model.train(was_training)
    return BoxPredictions(
        boxes=np.concatenate(boxes).astype(np.float64),
        scores=np.concatenate(scores).astype(np.float64),
        indexes=np.concatenate(indexes),
        image_sizes=np.concatenate(sizes).astype(np.float64),
    )


def match_boxes(
    root: Path,
    records: Sequence[CVOGLRecord],
    features: str = DEFAULT_FEATURES,
    on_progress: Callable[[int], None] | None = None,
    device: str = "cpu",
    headings: int = DEFAULT_HEADINGS,
) -> BoxPredictions:
    """The matcher's box per record of the dataset at ``root``, on the images as stored.

    ``features`` and ``headings`` as ``--features`` (kinds tried in turn
    until one fits) and ``--headings``. A
    sample the matcher finds no match for gets an empty box and score 0: it
    counts as a miss, as a wrong box would.
    """
    chain = matchers(features, device=device, headings=headings)
    boxes, scores, sizes = [], [], []
    for record in records:
        query = read_rgb(root / QUERY_DIR / record.query_name)
        reference = read_rgb(root / SATELLITE_DIR / record.sat_name)
        result = first_match(chain, query, record.click_xy, reference)
        boxes.append(result.box if result else (0.0, 0.0, 0.0, 0.0))
        scores.append(result.score if result else 0.0)
        sizes.append((reference.shape[1], reference.shape[0]))
        if on_progress:
            on_progress(1)
    return BoxPredictions(
        np.asarray(boxes, dtype=np.float64),
        np.asarray(scores, dtype=np.float64),
        np.arange(len(records)),
        np.asarray(sizes, dtype=np.float64),
    )


def first_found(*predictions: BoxPredictions) -> BoxPredictions:
    """Per sample, the box of the first of ``predictions`` that has one (``--method auto``: matcher, else model).

    All must cover the same samples in the same order.
    """
    first = predictions[0]
    for other in predictions[1:]:
        if not np.array_equal(other.indexes, first.indexes):
            raise ValueError("first_found needs predictions of the same samples in the same order")
    boxes, scores = first.boxes.copy(), first.scores.copy()
    for other in predictions[1:]:
        empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        boxes[empty], scores[empty] = other.boxes[empty], other.scores[empty]
    return BoxPredictions(boxes, scores, first.indexes, first.image_sizes)


def evaluate(records: Sequence[CVOGLRecord], predictions: BoxPredictions) -> EvalResult:
    """CVOGL metrics (acc@0.25, acc@0.5, mIoU, per category) of ``predictions`` on ``records``."""
    records = [records[i] for i in predictions.indexes]
    gt = np.array([r.box_xyxy for r in records], dtype=np.float64)
    ious = cvogl_iou(predictions.boxes, gt, predictions.image_sizes)
    metrics = summarize(ious, [r.category for r in records])
    rows = [
        {"id": r.id, "box": [round(float(v), 2) for v in box], "score": round(float(score), 5), "iou": round(float(iou), 5)}
        for r, box, score, iou in zip(records, predictions.boxes, predictions.scores, ious)
    ]
    return EvalResult(metrics=metrics, predictions=rows)


def evaluate_model(model: SMGeo, datasets: Sequence[CVOGLDataset], batch_size: int = 8) -> EvalResult:
    """SMGeo's CVOGL metrics pooled over several datasets (e.g. the val splits of several roots)."""
    records: list[CVOGLRecord] = []
    parts: list[BoxPredictions] = []
    for dataset in datasets:
        predictions = predict_boxes(model, dataset, batch_size=batch_size)
        predictions.indexes = predictions.indexes + len(records)
        parts.append(predictions)
        records += dataset.records
    pooled = BoxPredictions(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(BoxPredictions)))
    return evaluate(records, pooled)
