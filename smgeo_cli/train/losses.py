"""SMGeo's multi-task loss: focal heatmap, offset, box (L1 + GIoU) and MoE terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from smgeo_cli.model.config import SMGeoConfig
from smgeo_cli.model.head import boxes_at_cells
from smgeo_cli.train.targets import CenterTargets


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """Penalty-reduced pixel-wise focal loss (CornerNet/CenterNet).

    Args:
        logits: (B, 1, h, w) raw heatmap.
        target: (B, 1, h, w) Gaussian target, 1 at object centres.

    Negatives near a centre are down-weighted by ``(1 - target) ** beta``, so
    a peak one cell off costs little. Normalised by the number of objects.
    """
    logits = logits.float()
    prob = torch.sigmoid(logits)
    positive = target.eq(1).float()
    # log(p) and log(1 - p) from logsigmoid: exact where sigmoid saturates.
    pos_loss = -F.logsigmoid(logits) * (1 - prob) ** alpha * positive
    neg_loss = -F.logsigmoid(-logits) * prob**alpha * (1 - target) ** beta * (1 - positive)
    return (pos_loss.sum() + neg_loss.sum()) / positive.sum().clamp_min(1.0)


def smgeo_loss(maps: dict[str, torch.Tensor], targets: CenterTargets, config: SMGeoConfig) -> dict[str, torch.Tensor]:
    """Weighted total (``loss``) and each unweighted term, all scalars."""
    offset_pred = maps["offset"].float().flatten(2)
    flat_index = (targets.rows * maps["offset"].shape[-1] + targets.cols)[:, None, None].expand(-1, 2, 1)
    offset_at_centre = offset_pred.gather(2, flat_index).squeeze(2)  # (B, 2)

    pred_boxes = boxes_at_cells(
        maps["offset"].float(), maps["log_size"].float(), targets.rows[:, None], targets.cols[:, None], config.fusion_stride
    ).squeeze(1)
    terms = {
        "heatmap": focal_heatmap_loss(maps["heatmap"], targets.heatmap),
        "offset": F.l1_loss(offset_at_centre, targets.offset),
        "box_l1": F.l1_loss(pred_boxes / config.ref_size, targets.boxes / config.ref_size),
        "giou": generalized_box_iou_loss(pred_boxes, targets.boxes, reduction="mean"),
        "moe_balance": maps["moe_balance"],
        "moe_entropy": maps["moe_entropy"],
    }
    weights = {
        "heatmap": config.heatmap_weight,
        "offset": config.offset_weight,
        "box_l1": config.box_l1_weight,
        "giou": config.giou_weight,
        "moe_balance": config.moe_balance_weight,
        "moe_entropy": config.moe_entropy_weight,
    }
    terms["loss"] = sum(weights[name] * value for name, value in terms.items())
    return terms
