"""Training targets on the head's grid, from ground-truth boxes.

Cell, offset and size follow the conventions of :mod:`smgeo_cli.model.head`.
The heatmap target is an elliptical Gaussian sized by the box (as in TTFNet):
a wide object tolerates a peak further from its centre than a small one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Gaussian std as a share of the box side (TTFNet's alpha / 6).
GAUSSIAN_SIZE_FRACTION = 0.54 / 6
# No target narrower than this many cells: a sub-cell Gaussian is a single hot cell.
MIN_SIGMA_CELLS = 0.4


@dataclass
class CenterTargets:
    """Targets for a batch; grid (h, w) = reference size / stride.

    heatmap: (B, 1, h, w), exactly 1 at each object's centre cell.
    rows, cols: (B,) centre cell of each object.
    offset: (B, 2) centre position inside its cell, in [0, 1).
    boxes: (B, 4) x1, y1, x2, y2 in reference pixels.
    """

    heatmap: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    offset: torch.Tensor
    boxes: torch.Tensor


def center_targets(boxes: torch.Tensor, grid_size: int, stride: int) -> CenterTargets:
    """One object per sample: boxes (B, 4) in reference pixels -> :class:`CenterTargets`."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride  # in cells
    cell = centre.floor().clamp(0, grid_size - 1)
    offset = (centre - cell).clamp(0, 1 - 1e-4)
    cols, rows = cell[:, 0].long(), cell[:, 1].long()

    size_cells = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0) / stride
    sigma = (size_cells * GAUSSIAN_SIZE_FRACTION).clamp_min(MIN_SIGMA_CELLS)  # (B, 2) as (x, y)
    index = torch.arange(grid_size, device=boxes.device, dtype=boxes.dtype)
    gx = torch.exp(-((index[None, :] - cell[:, :1]) ** 2) / (2 * sigma[:, :1] ** 2))  # (B, w)
    gy = torch.exp(-((index[None, :] - cell[:, 1:]) ** 2) / (2 * sigma[:, 1:] ** 2))  # (B, h)
    heatmap = (gy[:, :, None] * gx[:, None, :]).unsqueeze(1)
    return CenterTargets(heatmap=heatmap, rows=rows, cols=cols, offset=offset, boxes=boxes)
