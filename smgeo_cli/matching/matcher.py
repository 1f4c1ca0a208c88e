"""Match a drone photo to a reference tile: ratio-test matches, a RANSAC homography, the click mapped through it.

All coordinates are pixels with the pixel-edge convention (pixel (c, r)
covers [c, c + 1) x [r, r + 1)); the homography maps query pixels of the photo
as given to reference pixels of the tile as given, whatever working sizes the
features were computed at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from . import learned
from .features import QUERY_TILTS, Features, describe
from .window import check_click, object_outline, outline_bounds

# MAGSAC++ (OpenCV's USAC framework) marginalises over the noise scale, so its
# threshold is an upper bound rather than a tuned cut; plain RANSAC otherwise.
ROBUST_METHOD = getattr(cv2, "USAC_MAGSAC", cv2.RANSAC)
RANSAC_CONFIDENCE = 0.999
RANSAC_MAX_ITERS = 10_000
# Ratio test and inlier floor of a fit. Lowe's 0.8 keeps more true matches
# of a degraded, oblique photo than a stricter cut; MAGSAC++ and ``plausible``
# reject the extra outliers. benchmarks/match_thresholds.py on held-out
# renders (photos described with QUERY_TILTS): 0.8 / 12 fits 161 of 300
# pairs, all on the object, and none of 9,000 pairs of a photo and a tile of
# other ground; a floor of 8 fits 185 but 5 of those 9,000 too.
RATIO = 0.8
MIN_INLIERS = 12
# Matches closer than this (pixels, both images) are one match.
DISTINCT_PX = 2.0
# Inliers at which the score's count term reaches 1 - 1/e.
SCORE_INLIERS = 25.0
# A view change between the working images beyond this is not one SIFT can
# match: a homography claiming it is a chance fit.
MAX_SCALE_CHANGE = 8.0
# Largest ratio of the homography's two local stretches at the click: about
# what a view 75 degrees off nadir does to the ground.
MAX_ANISOTROPY = 4.0


@dataclass(frozen=True)
class MatchResult:
    """Where a query photo's clicked object lies in a reference tile.

    Attributes:
        homography: (3, 3) float64, query pixels -> reference pixels, ``[2, 2] == 1``.
        click_xy: the click mapped into the reference, (x, y) reference pixels.
        outline: (N, 2) the query's object outline mapped into the reference.
        box: (x1, y1, x2, y2) axis-aligned bounds of ``outline`` in reference
            pixels; not clipped to the tile.
        inliers: matches consistent with the homography.
        matches: matches that passed the ratio test.
        inlier_ratio: ``inliers / matches``.
        score: confidence in [0, 1], ``(1 - exp(-inliers / SCORE_INLIERS)) *
            sqrt(inlier_ratio)``: evidence grows with the inlier count and
            saturates, and is discounted when most matches disagree. The
            square root keeps a photo that covers much more ground than the
            tile (so most of its matches fall outside it) from scoring near 0.
    """

    homography: np.ndarray
    click_xy: tuple[float, float]
    outline: np.ndarray
    box: tuple[float, float, float, float]
    inliers: int
    matches: int
    inlier_ratio: float
    score: float


def window_corners(window: Sequence[float]) -> np.ndarray:
    """(4, 2) corners of an (x1, y1, x2, y2) box: top-left, top-right, bottom-right, bottom-left."""
    x1, y1, x2, y2 = window
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def project(homography: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map (N, 2) points through a homography; returns the (N, 2) points and their (N,) projective depths w."""
    mapped = np.c_[points, np.ones(len(points))] @ homography.T
    return mapped[:, :2] / mapped[:, 2:], mapped[:, 2]


def local_jacobian(homography: np.ndarray, point: Sequence[float]) -> np.ndarray:
    """(2, 2) derivative of the homography's mapping at ``point``."""
    x, y = point
    (a, b, c), (d, e, f), (g, h, i) = homography
    w = g * x + h * y + i
    u, v = (a * x + b * y + c) / w, (d * x + e * y + f) / w
    return np.array([[a - g * u, b - h * u], [d - g * v, e - h * v]]) / w


def _is_convex(quad: np.ndarray) -> bool:
    """True when the 4-point polygon turns the same way at every corner (orientation kept)."""
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    return bool((turns > 0).all())


def plausible(
    homography: np.ndarray,
    click_xy: Sequence[float],
    corners: np.ndarray,
    query_scale: float,
    reference: Features,
) -> bool:
    """Whether a fitted homography can be a real view change rather than a chance fit.

    It must keep the click and the window in front of the camera (positive
    depth), keep orientation (no mirror), keep the window a convex
    quadrilateral, change scale between the working images by less than
    ``MAX_SCALE_CHANGE``, stretch no more than ``MAX_ANISOTROPY`` times more
    along one axis than the other, and put the click inside the tile.
    ``query_scale`` is the query's working pixels per photo pixel.
    """
    if not np.isfinite(homography).all():
        return False
    points, depths = project(homography, np.vstack([corners, click_xy]))
    if (depths <= 0).any() or not _is_convex(points[:4]):
        return False
    # Compare scales between the images the features saw, not the photo as given.
    jacobian = local_jacobian(homography, click_xy)
    to_work = np.diag(reference.work_scale) @ jacobian / query_scale
    stretches = np.linalg.svd(to_work, compute_uv=False)
    if np.linalg.det(to_work) <= 0 or stretches[1] <= 0:
        return False
    scale = math.sqrt(stretches[0] * stretches[1])
    if not 1 / MAX_SCALE_CHANGE <= scale <= MAX_SCALE_CHANGE or stretches[0] / stretches[1] > MAX_ANISOTROPY:
        return False
    width, height = reference.image_size
    x, y = points[4]
    return 0.0 <= x < width and 0.0 <= y < height


def ratio_matches(query: Features, reference: Features, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test: (M, 2) query points and their (M, 2) reference matches.

    A query keypoint matches its nearest reference descriptor when that one
    is clearly nearer than the second nearest (distance below ``ratio`` times).
    """
    if len(query) == 0 or len(reference) < 2:
        return np.empty((0, 2)), np.empty((0, 2))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors, reference.descriptors, k=2)
    kept = [(best.queryIdx, best.trainIdx) for best, second in pairs if best.distance < ratio * second.distance]
    if not kept:
        return np.empty((0, 2)), np.empty((0, 2))
    query_idx, reference_idx = np.array(kept).T
    return _distinct(query.keypoints[query_idx], reference.keypoints[reference_idx])


def _distinct(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The matches less repeats: pairs of the same two places (same ``DISTINCT_PX`` cells) count once.

    SIFT describes one point at several orientations, and simulated views
    find it again; each copy would pass as an inlier of its own, so a chance
    fit on three points could pass ``min_inliers``.
    """
    cells = np.floor(np.c_[source, target] / DISTINCT_PX).astype(np.int64)
    _, first = np.unique(cells, axis=0, return_index=True)
    first = np.sort(first)
    return source[first], target[first]


def correspondences(
    query: Features, reference: Features, *, ratio: float = RATIO, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Putative matches, (M, 2) query points and their (M, 2) reference points, each in its image's pixels.

    SIFT features pass Lowe's ratio test; learned ones are matched by
    LighterGlue on ``device``, which needs no ratio. Repeats of one pair of
    places count once.
    """
    if query.kind != reference.kind:
        raise ValueError(f"cannot match {query.kind} features with {reference.kind} features")
    if query.kind == learned.KIND:
        source, target = learned.glue_matches(query, reference, device=device)
        return _distinct(source, target)
    return ratio_matches(query, reference, ratio)


@dataclass(frozen=True)
class HomographyFit:
    """A robust homography between a query and a reference, before any click is placed with it.

    ``homography`` (3, 3) maps query pixels to reference pixels; ``inliers``
    of ``matches`` agree with it. Whether it is trustworthy depends on where
    the click and the object are (see :func:`place`), so one fit serves
    every click on the same photo and tile.
    """

    homography: np.ndarray
    inliers: int
    matches: int


def fit_homography(
    source: np.ndarray, target: np.ndarray, *, ransac_px: float = 4.0, min_inliers: int = MIN_INLIERS
) -> HomographyFit | None:
    """MAGSAC++ homography of (M, 2) ``source`` -> ``target`` points; None below ``min_inliers``."""
    if len(source) < max(min_inliers, 4):
        return None
    try:
        homography, inlier_mask = cv2.findHomography(
            source, target, ROBUST_METHOD, ransac_px, maxIters=RANSAC_MAX_ITERS, confidence=RANSAC_CONFIDENCE
        )
    except cv2.error:
        # USAC refuses point sets it cannot sample (e.g. many matches sharing
        # one location): no homography, so no match.
        return None
    if homography is None or abs(homography[2, 2]) < 1e-12:
        return None
    inliers = int(inlier_mask.sum())
    if inliers < min_inliers:
        return None
    return HomographyFit(homography / homography[2, 2], inliers, len(source))


def place(
    fit: HomographyFit | None,
    click_xy: Sequence[float],
    outline: np.ndarray,
    query_scale: float,
    reference: Features,
) -> MatchResult | None:
    """The click and the object outline carried into the reference by ``fit``; None when it fails ``plausible``.

    ``outline`` (N, 2) and ``click_xy`` are in query pixels; plausibility is
    judged on the corners of the outline's bounds. ``query_scale`` is the
    query's working pixels per query pixel.
    """
    if fit is None:
        return None
    corners = window_corners(outline_bounds(outline))
    if not plausible(fit.homography, click_xy, corners, query_scale, reference):
        return None
    points, _ = project(fit.homography, np.vstack([outline, click_xy]))
    inlier_ratio = fit.inliers / fit.matches
    return MatchResult(
        homography=fit.homography,
        click_xy=(float(points[-1, 0]), float(points[-1, 1])),
        outline=points[:-1],
        box=outline_bounds(points[:-1]),
        inliers=fit.inliers,
        matches=fit.matches,
        inlier_ratio=inlier_ratio,
        score=(1.0 - math.exp(-fit.inliers / SCORE_INLIERS)) * math.sqrt(inlier_ratio),
    )


def match_features(
    query: Features,
    reference: Features,
    click_xy: Sequence[float],
    outline: np.ndarray,
    *,
    ratio: float = RATIO,
    ransac_px: float = 4.0,
    min_inliers: int = MIN_INLIERS,
    device: str = "cpu",
) -> MatchResult | None:
    """Locate the clicked object of a described query in a described reference.

    Args:
        query, reference: from ``describe`` (SIFT) or ``learned.describe_xfeat``,
            of the same kind; the reference's can be cached per tile.
        click_xy: (x, y) in query pixels.
        outline: (N, 2) the query's object outline in query pixels, usually
            ``object_outline(query_rgb, click_xy)``; a box's is ``window_corners(box)``.
        ratio: Lowe's ratio-test threshold (SIFT).
        ransac_px: largest reprojection error of an inlier, in reference pixels.
        min_inliers: fewer inliers than this is "no match".
        device: where LighterGlue runs (learned features).

    Returns:
        The match, or None when there is no trustworthy one: too few matches
        or inliers, or a homography that fails ``plausible``.
    """
    check_click(query.image_size, click_xy)
    source, target = correspondences(query, reference, ratio=ratio, device=device)
    fit = fit_homography(source, target, ransac_px=ransac_px, min_inliers=min_inliers)
    query_scale = math.sqrt(query.work_scale[0] * query.work_scale[1])
    return place(fit, click_xy, outline, query_scale, reference)


def match_pair(
    query_rgb: np.ndarray,
    reference_rgb: np.ndarray,
    click_xy: Sequence[float],
    *,
    reference_valid: np.ndarray | None = None,
    query_max_side: int | None = 1024,
    ratio: float = RATIO,
    ransac_px: float = 4.0,
    min_inliers: int = MIN_INLIERS,
) -> MatchResult | None:
    """Locate the object clicked in a query photo inside one reference image.

    Describes both images, finds the object outline around the click and
    calls ``match_features``; to match one photo against many tiles, call
    ``describe`` and ``object_outline`` once per image and ``match_features``
    per pair instead.

    Args:
        query_rgb: (H, W, 3) uint8 RGB drone photo (or (H, W) grey).
        reference_rgb: (H, W, 3) uint8 RGB reference tile (or (H, W) grey).
        click_xy: (x, y) in query pixels.
        reference_valid: optional (H, W) bool, False on the tile's no-data.
        query_max_side: longest side, in pixels, the photo is shrunk to for
            SIFT; set it near the photo's footprint in tile pixels (None:
            full size).
        ratio, ransac_px, min_inliers: see ``match_features``.
    """
    return match_features(
        describe(query_rgb, max_side=query_max_side, tilts=QUERY_TILTS),
        describe(reference_rgb, valid=reference_valid),
        click_xy,
        object_outline(query_rgb, click_xy),
        ratio=ratio,
        ransac_px=ransac_px,
        min_inliers=min_inliers,
    )
