"""Bringing stages to one stride, and fusing the query vector into reference features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv - GroupNorm - GELU; GroupNorm because batches are small."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(min(32, out_channels // 4), out_channels),
        nn.GELU(),
    )


class ScaleNeck(nn.Module):
    """Several encoder stages resampled to one stride and summed.

    Each stage is normalised and projected to ``dim`` channels, resized to the
    grid of stride ``stride`` (finer stages pooled, coarser ones upsampled) and
    summed, then smoothed by a 3x3 conv block. Shared by both views, like the
    encoder.

    ``forward(stage_features, image_size)``: list of (B, C_s, H_s, W_s) ->
    (B, dim, image_size / stride, image_size / stride).
    """

    def __init__(self, stage_channels: list[int], stages: tuple[int, ...], dim: int, stride: int) -> None:
        super().__init__()
        self.stages = stages
        self.stride = stride
        self.projections = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(1, stage_channels[s]), nn.Conv2d(stage_channels[s], dim, 1)) for s in stages
        )
        self.smooth = conv_block(dim, dim)

    def forward(self, stage_features: list[torch.Tensor], image_size: int) -> torch.Tensor:
        grid = image_size // self.stride
        summed = 0
        for stage, project in zip(self.stages, self.projections):
            projected = project(stage_features[stage])
            if projected.shape[-1] > grid:
                projected = F.adaptive_avg_pool2d(projected, grid)
            elif projected.shape[-1] < grid:
                projected = F.interpolate(projected, size=(grid, grid), mode="bilinear", align_corners=False)
            summed = summed + projected
        return self.smooth(summed)


class QueryGuidedFusion(nn.Module):
    """Modulate reference cells by how much they look like the clicked object.

    The cosine similarity between the query vector and each reference cell
    acts three ways: as spatial attention (cells unlike the query are damped),
    as an extra channel the head sees directly, and, through a
    query-conditioned scale and shift (FiLM), as a say in which channels
    matter for this object.

    The projections start as identities, so before training the similarity
    is the plain cosine similarity of the features, the quantity the dense
    correspondence loss trains.

    ``forward(reference, query_vector)``: (B, D, h, w), (B, D) -> (B, D, h, w).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(dim, dim)
        self.reference_proj = nn.Conv2d(dim, dim, 1)
        with torch.no_grad():
            self.query_proj.weight.copy_(torch.eye(dim))
            self.reference_proj.weight.copy_(torch.eye(dim)[:, :, None, None])
            self.query_proj.bias.zero_()
            self.reference_proj.bias.zero_()
        # Similarities live in [-1, 1]; a learned temperature sharpens them.
        self.log_temperature = nn.Parameter(torch.tensor(2.3))
        self.film = nn.Linear(dim, 2 * dim)
        self.mix = conv_block(dim + 1, dim)

    def similarity(self, reference: torch.Tensor, query_vector: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w), (B, D) -> (B, 1, h, w) cosine similarity."""
        q = F.normalize(self.query_proj(query_vector), dim=1)
        r = F.normalize(self.reference_proj(reference), dim=1)
        return torch.einsum("bd,bdhw->bhw", q, r).unsqueeze(1)

    def forward(self, reference: torch.Tensor, query_vector: torch.Tensor) -> torch.Tensor:
        similarity = self.similarity(reference, query_vector)
        attention = torch.sigmoid(similarity * self.log_temperature.exp())
        scale, shift = self.film(query_vector)[:, :, None, None].chunk(2, dim=1)
        modulated = reference * attention * (1 + scale) + shift
        return self.mix(torch.cat([modulated, similarity], dim=1))


class ConcatFusion(nn.Module):
    """Ablation: the query vector tiled over the grid and concatenated, then mixed."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mix = conv_block(2 * dim, dim)

    def forward(self, reference: torch.Tensor, query_vector: torch.Tensor) -> torch.Tensor:
        tiled = query_vector[:, :, None, None].expand_as(reference)
        return self.mix(torch.cat([reference, tiled], dim=1))
