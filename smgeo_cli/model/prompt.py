"""The click prompt: a click map for the query's 4th channel, and click-guided pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def click_map(click_xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """CVOGL click map ``(1 - dist / diag) ** 2``, brightest at the click.

    Args:
        click_xy: (B, 2) click (x, y) in pixels of the image, from its top-left
            corner; pixel (c, r) has its centre at (c + 0.5, r + 0.5).
        height, width: image size in pixels.

    Returns:
        (B, 1, height, width) map in [0, 1].
    """
    rows = torch.arange(height, device=click_xy.device, dtype=click_xy.dtype) + 0.5
    cols = torch.arange(width, device=click_xy.device, dtype=click_xy.dtype) + 0.5
    dx = cols[None, None, :] - click_xy[:, 0, None, None]
    dy = rows[None, :, None] - click_xy[:, 1, None, None]
    diagonal = (height**2 + width**2) ** 0.5
    closeness = 1.0 - torch.sqrt(dx**2 + dy**2) / diagonal
    return closeness.clamp_min(0.0).pow(2).unsqueeze(1)


def click_weights(click_xy: torch.Tensor, image_size: int, grid_size: int, sigma_cells: float) -> torch.Tensor:
    """Normalised Gaussian weights over a feature grid, centred on the click.

    Args:
        click_xy: (B, 2) click in pixels of a square image of ``image_size``.
        grid_size: cells per side of the feature map.
        sigma_cells: Gaussian std in cells.

    Returns:
        (B, 1, grid_size, grid_size), each sample summing to 1.
    """
    cell = image_size / grid_size
    centres = (torch.arange(grid_size, device=click_xy.device, dtype=click_xy.dtype) + 0.5) * cell
    dx = (centres[None, None, :] - click_xy[:, 0, None, None]) / cell
    dy = (centres[None, :, None] - click_xy[:, 1, None, None]) / cell
    logits = -(dx**2 + dy**2) / (2 * sigma_cells**2)
    return F.softmax(logits.flatten(1), dim=1).view(-1, 1, grid_size, grid_size)


class ClickPooling(nn.Module):
    """Query vector from query features: what is at the click, plus the scene around it.

    The feature sampled exactly at the click, corrected by an MLP that mixes
    three views of the query map: that feature, a Gaussian-weighted mean
    around the click (the object's extent), and the global mean (context for
    matching the surroundings). The correction starts at zero, so an
    untrained pooling hands on the click's own feature: the one dense
    correspondence training teaches to match its place in the reference.

    ``forward(features, click_xy, image_size)``: (B, D, h, w) and (B, 2) -> (B, D).
    """

    def __init__(self, dim: int, sigma_cells: float = 1.0) -> None:
        super().__init__()
        self.sigma_cells = sigma_cells
        self.mix = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mix[-1].weight)
        nn.init.zeros_(self.mix[-1].bias)

    def forward(self, features: torch.Tensor, click_xy: torch.Tensor, image_size: int) -> torch.Tensor:
        grid = features.shape[-1]
        # grid_sample works in [-1, 1] with align_corners=False: pixel edges.
        sample_at = (click_xy / image_size * 2 - 1).view(-1, 1, 1, 2)
        at_click = F.grid_sample(features, sample_at.to(features.dtype), align_corners=False).flatten(1)
        weights = click_weights(click_xy, image_size, grid, self.sigma_cells).to(features.dtype)
        around_click = (features * weights).sum(dim=(2, 3))
        scene = features.mean(dim=(2, 3))
        return at_click + self.mix(torch.cat([at_click, around_click, scene], dim=1))
