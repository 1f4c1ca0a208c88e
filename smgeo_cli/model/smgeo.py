"""SMGeo: click-prompted cross-view object localisation.

Query (drone photo + click) and reference tile go through one shared Swin with
grid-level MoE; multi-stage features are brought to one stride; a query vector
pooled around the click modulates every reference cell; an anchor-free head
predicts the object's centre heatmap, offset and size on the reference grid.

The reference path (``encode_reference``) does not depend on the query, so a
tile's features can be computed once and reused for every click on it.
"""

from __future__ import annotations

import torch
from torch import nn

from smgeo_cli.model.config import SMGeoConfig
from smgeo_cli.model.encoder import CrossViewEncoder
from smgeo_cli.model.fusion import ConcatFusion, QueryGuidedFusion, ScaleNeck
from smgeo_cli.model.head import CenterHead, decode_detections
from smgeo_cli.model.prompt import ClickPooling, click_map


class SMGeo(nn.Module):
    """The full network. Images are ImageNet-normalised RGB tensors.

    Shapes: query (B, 3, Q, Q), click (B, 2) as (x, y) in query pixels,
    reference (B, 3, R, R); Q and R as in the config (other multiples of the
    coarsest stride work too). Boxes come out in reference pixels.
    """

    def __init__(self, config: SMGeoConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = CrossViewEncoder(config)
        self.neck = ScaleNeck(self.encoder.stage_channels, config.fusion_stages, config.fusion_dim, config.fusion_stride)
        self.click_pooling = ClickPooling(config.fusion_dim)
        fusion = QueryGuidedFusion if config.use_fusion else ConcatFusion
        self.fusion = fusion(config.fusion_dim)
        self.head = CenterHead(config.fusion_dim, config.head_dim)

    @property
    def stride(self) -> int:
        return self.config.fusion_stride

    def encode_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) -> (B, D, R / stride, R / stride) query-independent features."""
        return self.neck(self.encoder(reference, "reference"), reference.shape[-1])

    def encode_query_map(self, query: torch.Tensor, click_xy: torch.Tensor) -> torch.Tensor:
        """(B, 3, Q, Q), (B, 2) -> (B, D, Q / stride, Q / stride) features of the clicked photo."""
        size = query.shape[-1]
        prompt = click_map(click_xy.to(query.dtype), query.shape[-2], size)
        return self.neck(self.encoder(torch.cat([query, prompt], dim=1), "query"), size)

    def encode_query(self, query: torch.Tensor, click_xy: torch.Tensor) -> torch.Tensor:
        """(B, 3, Q, Q), (B, 2) -> (B, D) vector describing the clicked object."""
        features = self.encode_query_map(query, click_xy)
        return self.click_pooling(features, click_xy.to(features.dtype), query.shape[-1])

    def predict_maps(self, reference_features: torch.Tensor, query_vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head maps for features from ``encode_reference`` and a query vector.

        A single query vector (1, D) is matched against every reference in the batch.
        """
        if query_vector.shape[0] == 1:
            query_vector = query_vector.expand(reference_features.shape[0], -1)
        return self.head(self.fusion(reference_features, query_vector))

    def forward(self, query: torch.Tensor, click_xy: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head maps (see :class:`CenterHead`), ``moe_balance`` and ``moe_entropy`` scalars, and the
        features both views were matched with: ``query_features`` (B, D, Q / stride, Q / stride) and
        ``reference_features`` (B, D, R / stride, R / stride), for correspondence supervision."""
        self.pop_aux_losses()  # drop leftovers of calls outside forward()
        reference_features = self.encode_reference(reference)
        query_features = self.encode_query_map(query, click_xy)
        query_vector = self.click_pooling(query_features, click_xy.to(query_features.dtype), query.shape[-1])
        maps = self.predict_maps(reference_features, query_vector)
        maps.update(self.pop_aux_losses())
        maps.update(query_features=query_features, reference_features=reference_features)
        return maps

    def pop_aux_losses(self) -> dict[str, torch.Tensor]:
        """Mean MoE auxiliary losses over the GMoE calls since the last pop (zeros without MoE)."""
        calls = [aux for layer in self.encoder.moe_layers() for aux in layer.pop_aux_losses()]
        device = next(self.parameters()).device
        if not calls:
            zero = torch.zeros((), device=device)
            return {"moe_balance": zero, "moe_entropy": zero}
        return {name: torch.stack([c[name] for c in calls]).mean() for name in calls[0]}

    @torch.inference_mode()
    def detect(
        self,
        query: torch.Tensor,
        click_xy: torch.Tensor,
        reference: torch.Tensor | None = None,
        reference_features: torch.Tensor | None = None,
        top_k: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k boxes (B, K, 4) in reference pixels and scores (B, K).

        Pass ``reference_features`` from :meth:`encode_reference` to skip
        encoding a tile seen before.
        """
        if reference_features is None:
            reference_features = self.encode_reference(reference)
        maps = self.predict_maps(reference_features, self.encode_query(query, click_xy))
        self.pop_aux_losses()
        return decode_detections(maps, self.stride, top_k)
