"""CVOGL metrics on a hand-computed case: truncation, clamping, strict thresholds, categories."""

import numpy as np
import pytest

from smgeo_cli.metrics import cvogl_iou, summarize

# (pred, gt, image (w, h), category, expected IoU, why)
CASES = [
    ([0, 0, 10, 10], [0, 0, 10, 10], (100, 100), "building", 1.0, "identical"),
    ([0, 0, 10, 10], [0, 0, 10, 5], (100, 100), "building", 0.5, "exactly 0.5: not a hit at 0.5"),
    ([10, 10, 20, 20], [10.9, 10.9, 20.9, 20.9], (100, 100), "road", 1.0, "gt truncated, not rounded"),
    ([150, 50, 199, 99], [150, 50, 250, 150], (200, 100), "road", 1.0, "gt clamped to w-1, h-1"),
    ([0, 0, 10, 10], [20, 20, 30, 30], (100, 100), "bridge", 0.0, "disjoint"),
    ([0, 0, 5, 5], [0, 0, 10, 10], (100, 100), "bridge", 0.25, "exactly 0.25: not a hit at 0.25"),
    ([-5, 0, 10, 10], [0, 0, 10, 10], (100, 100), "building", 2 / 3, "prediction not clamped"),
    ([0, 0, 10, 10], [0, 0, 4, 10], (100, 100), "road", 0.4, "partial"),
]


def test_iou_follows_the_cvogl_reference():
    pred, gt, size, _, expected, _ = zip(*CASES)
    ious = cvogl_iou(np.array(pred, float), np.array(gt, float), np.array(size, float))
    assert ious == pytest.approx(expected, abs=1e-12)
    # Exactly 0.5 and 0.25 must stay exact for the strict thresholds to mean anything.
    assert ious[1] == 0.5 and ious[5] == 0.25


def test_summary_of_the_hand_computed_case():
    pred, gt, size, categories, _, _ = zip(*CASES)
    ious = cvogl_iou(np.array(pred, float), np.array(gt, float), np.array(size, float))
    summary = summarize(ious, categories)

    assert summary["n"] == 8
    assert summary["acc@0.25"] == 6 / 8
    assert summary["acc@0.5"] == 4 / 8
    assert summary["mIoU"] == pytest.approx((1 + 0.5 + 1 + 1 + 0 + 0.25 + 2 / 3 + 0.4) / 8)
    per = summary["per_category"]
    assert list(per) == ["bridge", "building", "road"]
    assert per["building"] == {
        "n": 3, "acc@0.25": 1.0, "acc@0.5": pytest.approx(2 / 3), "mIoU": pytest.approx((1 + 0.5 + 2 / 3) / 3)
    }
    assert per["road"] == {"n": 3, "acc@0.25": 1.0, "acc@0.5": pytest.approx(2 / 3), "mIoU": pytest.approx(0.8)}
    assert per["bridge"] == {"n": 2, "acc@0.25": 0.0, "acc@0.5": 0.0, "mIoU": pytest.approx(0.125)}


def test_summary_needs_one_category_per_sample():
    with pytest.raises(ValueError):
        summarize(np.array([0.3, 0.7]), ["a"])
