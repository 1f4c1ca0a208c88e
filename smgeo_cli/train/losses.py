"""SMGeo's multi-task loss: focal heatmap, offset, box (L1 + GIoU), MoE and dense correspondence terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def giou_loss(pred_boxes: torch.Tensor, target_boxes: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - generalised IoU (Rezatofighi et al. 2019) of (..., 4) xyxy box pairs, one value per pair.

    Unlike IoU it still has a gradient when the boxes do not overlap: the empty
    part of their smallest enclosing box.
    """
    x1, y1, x2, y2 = pred_boxes.unbind(-1)
    tx1, ty1, tx2, ty2 = target_boxes.unbind(-1)
    overlap_w = (torch.minimum(x2, tx2) - torch.maximum(x1, tx1)).clamp(min=0)
    overlap_h = (torch.minimum(y2, ty2) - torch.maximum(y1, ty1)).clamp(min=0)
    intersection = overlap_w * overlap_h
    union = (x2 - x1) * (y2 - y1) + (tx2 - tx1) * (ty2 - ty1) - intersection
    enclosing = (torch.maximum(x2, tx2) - torch.minimum(x1, tx1)) * (torch.maximum(y2, ty2) - torch.minimum(y1, ty1))
    giou = intersection / (union + eps) - (enclosing - union) / (enclosing + eps)
    return 1 - giou


def _cell_centres(cells: int, stride: int, device: torch.device) -> torch.Tensor:
    """(cells * cells, 3) homogeneous (x, y, 1) pixel centres of a square grid of stride-wide cells, row-major."""
    centres = (torch.arange(cells, device=device, dtype=torch.float32) + 0.5) * stride
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.flatten(), y.flatten(), torch.ones_like(x.flatten())], dim=1)


def cell_infonce(
    source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of each labelled source cell picking its target cell, and the number labelled.

    source (B, D, s, s) and target (B, D, t, t) are feature maps; labels (B, s * s)
    index target cells row-major; valid (B, s * s) marks the labelled source cells.
    Similarity is cosine over ``temperature``, softmax over all target cells.
    """
    source_vectors = F.normalize(source.float().flatten(2), dim=1)  # (B, D, n)
    target_vectors = F.normalize(target.float().flatten(2), dim=1)
    logits = torch.einsum("bdn,bdm->bnm", source_vectors, target_vectors) / temperature
    per_cell = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long(), reduction="none")
    return (per_cell * valid.reshape(-1)).sum(), valid.sum()


def _homography_labels(
    source_cells: int, target_cells: int, source_to_target: torch.Tensor, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target cell (B, s * s) of each source cell's centre under source_to_target (B, 3, 3), and where it is valid.

    A source cell is labelled when its centre lands in front of the camera and
    inside the target; NaN homographies label nothing.
    """
    centres = _cell_centres(source_cells, stride, source_to_target.device)
    mapped = torch.einsum("bij,nj->bni", source_to_target.float(), centres)  # (B, n, 3)
    depth = mapped[..., 2]
    xy = mapped[..., :2] / depth.where(depth.abs() > 1e-9, torch.ones_like(depth)).unsqueeze(-1)
    col, row = (xy / stride).floor().unbind(-1)
    valid = (depth > 0) & (col >= 0) & (col < target_cells) & (row >= 0) & (row < target_cells)
    valid &= torch.isfinite(mapped).all(dim=-1)
    return (row * target_cells + col).where(valid, torch.zeros_like(row)).long(), valid


def _matching_loss(
    source: torch.Tensor, target: torch.Tensor, source_to_target: torch.Tensor, stride: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cell_infonce` of source (B, D, s, s) against target (B, D, t, t), labelled by a homography."""
    labels, valid = _homography_labels(source.shape[-1], target.shape[-1], source_to_target, stride)
    return cell_infonce(source, target, labels, valid, temperature)


def correspondence_loss(
    query_features: torch.Tensor,
    reference_features: torch.Tensor,
    reference_to_query: torch.Tensor,
    stride: int,
    temperature: float = 0.1,
) -> torch.Tensor:
    """InfoNCE between the views' feature cells that see the same ground, both ways.

    Args:
        query_features: (B, D, q, q), cells of a query q * stride pixels wide.
        reference_features: (B, D, r, r), cells of a reference r * stride pixels wide.
        reference_to_query: (B, 3, 3) homography from reference to query pixels;
            all-NaN for pairs without one.

    Each cell whose centre the homography places inside the other view must
    find its true cell there among all of that view's cells (cosine
    similarity over temperature, softmax cross-entropy), as learned local
    descriptors are trained: hundreds of labels a pair where the box gives
    one. Mean over labelled cells; zero when no cell is labelled.
    """
    known = torch.isfinite(reference_to_query).all(dim=(1, 2))
    if not known.any():
        return query_features.sum() * 0.0  # keeps the graph whole for DDP
    query_features, reference_features = query_features[known], reference_features[known]
    reference_to_query = reference_to_query[known].float()
    forward_sum, forward_count = _matching_loss(
        query_features, reference_features, torch.linalg.inv(reference_to_query), stride, temperature
    )
    backward_sum, backward_count = _matching_loss(
        reference_features, query_features, reference_to_query, stride, temperature
    )
    return (forward_sum + backward_sum) / (forward_count + backward_count).clamp_min(1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values (B,) where mask (B,) is set; zero, with the graph kept, where none is."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def smgeo_loss(
    maps: dict[str, torch.Tensor],
    targets: CenterTargets,
    config: SMGeoConfig,
    reference_to_query: torch.Tensor | None = None,
    box_has_extent: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted total (``loss``) and each unweighted term, all scalars.

    reference_to_query (B, 3, 3), the pairs' homographies (NaN where unknown),
    adds the ``correspondence`` term on the features ``SMGeo.forward`` returns.
    box_has_extent (B,) bool, False for boxes placed at random (synth's
    fallback), keeps those out of the box-size terms (L1, GIoU): their
    centres are real ground to find, their sizes are noise to the head.
    """
    offset_pred = maps["offset"].float().flatten(2)
    flat_index = (targets.rows * maps["offset"].shape[-1] + targets.cols)[:, None, None].expand(-1, 2, 1)
    offset_at_centre = offset_pred.gather(2, flat_index).squeeze(2)  # (B, 2)

    pred_boxes = boxes_at_cells(
        maps["offset"].float(), maps["log_size"].float(), targets.rows[:, None], targets.cols[:, None], config.fusion_stride
    ).squeeze(1)
    if box_has_extent is None:
        box_has_extent = torch.ones(len(pred_boxes), dtype=torch.bool, device=pred_boxes.device)
    box_l1 = F.l1_loss(pred_boxes / config.ref_size, targets.boxes / config.ref_size, reduction="none").mean(dim=1)
    terms = {
        "heatmap": focal_heatmap_loss(maps["heatmap"], targets.heatmap),
        "offset": F.l1_loss(offset_at_centre, targets.offset),
        "box_l1": _masked_mean(box_l1, box_has_extent),
        "giou": _masked_mean(giou_loss(pred_boxes, targets.boxes), box_has_extent),
        "moe_balance": maps["moe_balance"],
        "moe_entropy": maps["moe_entropy"],
    }
    if reference_to_query is not None:
        terms["correspondence"] = correspondence_loss(
            maps["query_features"], maps["reference_features"], reference_to_query,
            config.fusion_stride, config.correspondence_temperature,
        )
    weights = {
        "heatmap": config.heatmap_weight,
        "offset": config.offset_weight,
        "box_l1": config.box_l1_weight,
        "giou": config.giou_weight,
        "moe_balance": config.moe_balance_weight,
        "moe_entropy": config.moe_entropy_weight,
        "correspondence": config.correspondence_weight,
    }
    terms["loss"] = sum(weights[name] * value for name, value in terms.items())
    return terms
