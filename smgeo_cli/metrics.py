"""CVOGL evaluation metrics, computed exactly as the CVOGL reference code (DetGeo) does.

One predicted box per sample. The ground-truth box is truncated to integers
and clamped to [0, size - 1]; the prediction is used as it is. IoU is by plain
area (no +1 pixel), with 1e-16 added to the union. acc@0.25 and acc@0.5 are
the shares of samples with IoU strictly above the threshold; mIoU is the mean
IoU. Boxes are x1, y1, x2, y2 in the satellite image's own pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cvogl_iou(pred_xyxy: np.ndarray, gt_xyxy: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    """IoU of each predicted box with its ground truth, the CVOGL way.

    pred_xyxy, gt_xyxy: (N, 4) x1, y1, x2, y2 in satellite pixels.
    image_size: (N, 2) width, height of each satellite image (or (2,) for all).
    Returns (N,) float64. An inverted box (x2 < x1 or y2 < y1) has zero area.
    """
    pred = np.asarray(pred_xyxy, dtype=np.float64).reshape(-1, 4)
    size = np.broadcast_to(np.asarray(image_size, dtype=np.float64), (len(pred), 2))
    # The reference casts the box to int (truncation towards zero), then clamps.
    upper = np.tile(size - 1.0, 2)
    gt = np.clip(np.trunc(np.asarray(gt_xyxy, dtype=np.float64).reshape(-1, 4)), 0.0, upper)

    def area(box: np.ndarray) -> np.ndarray:
        return np.maximum(box[:, 2] - box[:, 0], 0.0) * np.maximum(box[:, 3] - box[:, 1], 0.0)

    overlap = np.concatenate([np.maximum(pred[:, :2], gt[:, :2]), np.minimum(pred[:, 2:], gt[:, 2:])], axis=1)
    intersection = area(overlap)
    return intersection / (area(pred) + area(gt) - intersection + 1e-16)


def _scores(ious: np.ndarray) -> dict[str, float | int]:
    return {
        "n": int(ious.size),
        "acc@0.25": float(np.mean(ious > 0.25)),
        "acc@0.5": float(np.mean(ious > 0.5)),
        "mIoU": float(np.mean(ious)),
    }


def summarize(ious: np.ndarray, categories: Sequence[str]) -> dict:
    """acc@0.25, acc@0.5 and mIoU (fractions in [0, 1]) over all samples and per category.

    Returns {"n", "acc@0.25", "acc@0.5", "mIoU", "per_category": {category: {same keys}}},
    categories in sorted order.
    """
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    labels = np.asarray(categories, dtype=object)
    if ious.size == 0 or labels.shape != ious.shape:
        raise ValueError(
            f"need one category per IoU and at least one sample: {ious.size} IoUs, {labels.size} categories"
        )
    summary: dict = _scores(ious)
    names = sorted(set(labels.tolist()))
    summary["per_category"] = {str(name): _scores(ious[labels == name]) for name in names}
    return summary
