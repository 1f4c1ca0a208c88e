"""Anchor-free (CenterNet-style) head: centre heatmap, sub-cell offset, box size.

Conventions, shared with the training targets: the grid has stride ``s``
reference pixels; an object whose centre is at pixel (cx, cy) belongs to cell
(row, col) = (floor(cy / s), floor(cx / s)), its offset is the fractional part
(cx / s - col, cy / s - row) in [0, 1), and its size is predicted as
log(width / s), log(height / s).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from smgeo_cli.model.fusion import conv_block

# Initial heatmap bias: sigmoid(-4.6) ~ 0.01, so training starts from "no object
# anywhere" and the focal loss is not swamped by easy negatives (CenterNet).
HEATMAP_PRIOR_BIAS = -4.6


def branch(dim: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_block(dim, dim), nn.Conv2d(dim, out_channels, 1))


class CenterHead(nn.Module):
    """``forward(fused)``: (B, D, h, w) -> dict of raw maps.

    ``heatmap`` (B, 1, h, w) logits, ``offset`` (B, 2, h, w) in [0, 1],
    ``log_size`` (B, 2, h, w) log of box (w, h) in cells.
    """

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.stem = conv_block(in_dim, dim)
        self.heatmap = branch(dim, 1)
        self.offset = branch(dim, 2)
        self.log_size = branch(dim, 2)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_PRIOR_BIAS)

    def forward(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(fused)
        return {
            "heatmap": self.heatmap(x),
            "offset": torch.sigmoid(self.offset(x)),
            "log_size": self.log_size(x),
        }


def boxes_at_cells(
    offset: torch.Tensor, log_size: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, stride: int
) -> torch.Tensor:
    """Decode the boxes predicted at given cells.

    Args:
        offset, log_size: (B, 2, h, w) head maps.
        rows, cols: (B, K) integer cell indexes.

    Returns:
        (B, K, 4) boxes x1, y1, x2, y2 in reference pixels.
    """
    grid_w = offset.shape[-1]
    flat_index = (rows * grid_w + cols).unsqueeze(1).expand(-1, 2, -1)
    off = offset.flatten(2).gather(2, flat_index)  # (B, 2, K)
    # exp() of a runaway logit must not overflow: no box exceeds ~e x the grid.
    max_log = math.log(max(offset.shape[-2:])) + 1.0
    size = log_size.flatten(2).gather(2, flat_index).clamp(-4.0, max_log).exp()
    cx = (cols + off[:, 0]) * stride
    cy = (rows + off[:, 1]) * stride
    half_w = size[:, 0] * stride / 2
    half_h = size[:, 1] * stride / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def decode_detections(
    head_maps: dict[str, torch.Tensor], stride: int, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaks of the heatmap (3x3 max-pool) as the top-k scored boxes.

    Returns:
        boxes: (B, K, 4) x1, y1, x2, y2 in reference pixels, best first.
        scores: (B, K) heatmap probabilities in [0, 1].
    """
    heat = torch.sigmoid(head_maps["heatmap"].float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    grid_w = heat.shape[-1]
    k = min(top_k, peaks[0].numel())
    scores, flat_index = peaks.flatten(1).topk(k, dim=1)
    rows = torch.div(flat_index, grid_w, rounding_mode="floor")
    cols = flat_index % grid_w
    boxes = boxes_at_cells(head_maps["offset"].float(), head_maps["log_size"].float(), rows, cols, stride)
    return boxes, scores
