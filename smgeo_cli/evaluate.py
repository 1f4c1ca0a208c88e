"""Evaluation on a CVOGL-format split: one top box per sample, CVOGL metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from smgeo_cli.data.cvogl import CVOGLDataset
from smgeo_cli.metrics import cvogl_iou, summarize
from smgeo_cli.model.smgeo import SMGeo


@dataclass
class EvalResult:
    """``metrics`` as :func:`smgeo_cli.metrics.summarize`; one prediction dict per sample.

    Prediction boxes are x1, y1, x2, y2 in the satellite image's own pixels
    (as stored on disk), whatever size the model resized it to.
    """

    metrics: dict
    predictions: list[dict]


@torch.inference_mode()
def predict_boxes(
    model: SMGeo,
    dataset: Dataset,
    batch_size: int = 8,
    num_workers: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top box of each sample in satellite-file pixels.

    Returns boxes (N, 4), scores (N,), dataset indexes (N,) and satellite
    image sizes (N, 2) as (width, height); ``on_batch`` is called with the
    number of samples done after each batch (progress).
    """
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
        sizes.append((batch["ref_scale"] * batch["ref"].shape[-1]).numpy())
        if on_batch:
            on_batch(len(batch["index"]))
    model.train(was_training)
    return tuple(np.concatenate(parts) for parts in (boxes, scores, indexes, sizes))


def evaluate(
    model: SMGeo,
    dataset: CVOGLDataset,
    batch_size: int = 8,
    num_workers: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> EvalResult:
    """CVOGL metrics of ``model`` on ``dataset`` (acc@0.25, acc@0.5, mIoU, per category)."""
    boxes, scores, indexes, image_sizes = predict_boxes(model, dataset, batch_size, num_workers, on_batch)
    records = [dataset.records[i] for i in indexes]
    gt = np.array([r.box_xyxy for r in records], dtype=np.float64)
    ious = cvogl_iou(boxes.astype(np.float64), gt, np.rint(image_sizes))
    metrics = summarize(ious, [r.category for r in records])
    predictions = [
        {"id": r.id, "box": [round(float(v), 2) for v in box], "score": round(float(score), 5), "iou": round(float(iou), 5)}
        for r, box, score, iou in zip(records, boxes, scores, ious)
    ]
    return EvalResult(metrics=metrics, predictions=predictions)
