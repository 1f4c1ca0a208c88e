"""The training-free matcher: homographies recovered, unrelated images unmatched, outlines on objects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from smgeo_cli.errors import UsageError
from smgeo_cli.matching import (
    Features,
    describe,
    fallback_outline,
    match_features,
    match_pair,
    object_outline,
    outline_bounds,
)
from smgeo_cli.matching.features import QUERY_TILTS
from smgeo_cli.matching.matcher import plausible, project, ratio_matches, window_corners

AERIAL = Path(__file__).parent / "data" / "geo" / "test_tiled.tif"
# Pixel-edge coordinates to OpenCV's pixel-centre coordinates.
_EDGE_TO_CENTRE = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def aerial() -> np.ndarray:
    """(1000, 1000, 3) real 0.25 m aerial photo: river, industry, parking, roads."""
    with rasterio.open(AERIAL) as dataset:
        return np.moveaxis(dataset.read([1, 2, 3]), 0, -1)


@pytest.fixture(scope="module")
def reference(aerial) -> np.ndarray:
    """Its central 600 x 600 pixels."""
    return aerial[200:800, 200:800]


def view_of(
    reference: np.ndarray,
    angle_deg: float,
    scale: float,
    tilt: tuple[float, float],
    size: tuple[int, int],
    squeeze: tuple[float, float] = (1.0, 0.0),
):
    """A drone-like view of the reference: rotated, scaled, tilted (perspective), centred on it.

    ``squeeze`` (factor, direction in degrees) compresses the ground along
    one direction, as a camera ``arccos(1 / factor)`` off nadir sees it.

    Returns the (H, W, 3) view and the true homography from view pixels to
    reference pixels (pixel edges).
    """
    a = np.deg2rad(angle_deg)
    centre = np.array([[1.0, 0.0, -reference.shape[1] / 2], [0.0, 1.0, -reference.shape[0] / 2], [0.0, 0.0, 1.0]])
    rotate = np.array([[scale * np.cos(a), -scale * np.sin(a), 0.0], [scale * np.sin(a), scale * np.cos(a), 0.0], [0, 0, 1]])
    perspective = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [tilt[0], tilt[1], 1.0]])
    to_view = np.array([[1.0, 0.0, size[0] / 2], [0.0, 1.0, size[1] / 2], [0.0, 0.0, 1.0]])
    d = np.deg2rad(squeeze[1])
    direction = np.array([[np.cos(d), -np.sin(d), 0.0], [np.sin(d), np.cos(d), 0.0], [0.0, 0.0, 1.0]])
    squash = direction @ np.diag([1.0 / squeeze[0], 1.0, 1.0]) @ direction.T
    reference_to_view = to_view @ perspective @ rotate @ squash @ centre
    warp = _EDGE_TO_CENTRE @ reference_to_view @ np.linalg.inv(_EDGE_TO_CENTRE)
    view = cv2.warpPerspective(reference, warp, size, flags=cv2.INTER_LINEAR)
    return view, np.linalg.inv(reference_to_view)


def smooth_texture(size: tuple[int, int], seed: int) -> np.ndarray:
    """(H, W, 3) uint8 blotchy colour texture with scattered discs: keypoints, but no real scene."""
    rng = np.random.default_rng(seed)
    width, height = size
    noise = sum(
        cv2.resize(rng.random((height // cell + 1, width // cell + 1, 3)).astype(np.float32), size) / (cell**0.5)
        for cell in (4, 16, 64)
    )
    image = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    for _ in range(40):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(3, 15)), colour, thickness=-1)
    return image


def box_iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def tilted_view(reference):
    """A 800 x 600 view rotated 25 degrees, zoomed 1.4x, with mild perspective."""
    return view_of(reference, angle_deg=25.0, scale=1.4, tilt=(3e-4, -2e-4), size=(800, 600))


def test_clicks_map_through_a_known_homography_within_two_pixels(reference, tilted_view):
    view, truth = tilted_view
    # The view is shrunk to 512 px for SIFT: keypoints must still come back in view pixels.
    query = describe(view, max_side=512)
    tile = describe(reference)
    for click in [(400.0, 300.0), (250.0, 180.0), (560.0, 430.0)]:
        outline = object_outline(view, click)
        result = match_features(query, tile, click, outline)
        assert result is not None
        expected = project(truth, np.array([click]))[0][0]
        assert np.hypot(*(np.array(result.click_xy) - expected)) < 2.0
        # The box bounds the query's object outline carried into the reference.
        expected_outline = project(truth, outline)[0]
        np.testing.assert_allclose(result.outline, expected_outline, atol=3.0)
        np.testing.assert_allclose(result.box, outline_bounds(expected_outline), atol=3.0)
        assert result.inliers >= 12 and 0.0 < result.inlier_ratio <= 1.0
        assert 0.5 < result.score <= 1.0


def test_a_view_60_degrees_off_nadir_matches_through_simulated_tilts(reference):
    # The ground squeezed 2.5 times across a diagonal (66 degrees off nadir): SIFT alone finds no fit.
    view, truth = view_of(reference, angle_deg=20.0, scale=1.4, tilt=(0.0, 0.0), size=(800, 600), squeeze=(2.5, 30.0))
    click = (400.0, 300.0)
    outline = object_outline(view, click)
    tile = describe(reference)
    assert match_features(describe(view, max_side=512), tile, click, outline) is None
    result = match_features(describe(view, max_side=512, tilts=QUERY_TILTS), tile, click, outline)
    assert result is not None
    expected = project(truth, np.array([click]))[0][0]
    assert np.hypot(*(np.array(result.click_xy) - expected)) < 2.0


def test_repeated_keypoints_count_as_one_match(reference, tilted_view):
    # Simulated views find one point several times: each copy must not pass as another inlier.
    query = describe(tilted_view[0], max_side=512)
    tripled = Features(np.repeat(query.keypoints, 3, axis=0), np.repeat(query.descriptors, 3, axis=0),
                       query.image_size, query.work_scale)  # fmt: skip
    tile = describe(reference)
    once, _ = ratio_matches(query, tile, 0.8)
    thrice, _ = ratio_matches(tripled, tile, 0.8)
    assert len(once) > 50 and len(thrice) == len(once)


def test_match_pair_agrees_with_the_cached_path(reference, tilted_view):
    view, truth = tilted_view
    click = (400.0, 300.0)
    result = match_pair(view, reference, click, query_max_side=512)
    described = describe(view, max_side=512, tilts=QUERY_TILTS)
    cached = match_features(described, describe(reference), click, object_outline(view, click))
    assert result is not None and cached is not None
    np.testing.assert_allclose(result.click_xy, cached.click_xy, atol=1e-6)
    assert result.inliers == cached.inliers


def test_unrelated_images_give_no_match(aerial, reference):
    texture = smooth_texture((640, 480), seed=1)
    assert match_pair(texture, reference, (320.0, 240.0)) is None
    assert match_pair(reference, smooth_texture((600, 600), seed=2), (300.0, 300.0)) is None
    # The hard case: the same photo, sensor and kind of scene, but no common ground.
    north_view, _ = view_of(aerial[:480], angle_deg=20.0, scale=1.2, tilt=(2e-4, 1e-4), size=(640, 480))
    assert match_pair(north_view, aerial[520:], (320.0, 240.0)) is None


def test_no_keypoints_near_no_data(reference):
    valid = np.ones(reference.shape[:2], dtype=bool)
    valid[:, 300:] = False
    padded = reference.copy()
    padded[~valid] = 0
    features = describe(padded, valid=valid)
    assert len(features) > 100
    assert features.keypoints[:, 0].max() < 300


def test_implausible_homographies_are_rejected(reference):
    query = describe(reference)
    corners = window_corners((250.0, 250.0, 350.0, 350.0))
    click = (300.0, 300.0)
    assert plausible(np.eye(3), click, corners, 1.0, query)
    mirror = np.array([[-1.0, 0.0, 600.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert not plausible(mirror, click, corners, 1.0, query)
    too_small = np.diag([0.05, 0.05, 1.0])
    assert not plausible(too_small, click, corners, 1.0, query)
    squashed = np.diag([2.0, 0.25, 1.0])
    assert not plausible(squashed, click, corners, 1.0, query)
    off_tile = np.array([[1.0, 0.0, 400.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert not plausible(off_tile, click, corners, 1.0, query)
    behind_camera = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0 / 320.0, 1.0]])
    assert not plausible(behind_camera, click, corners, 1.0, query)


def roof_scene(size: tuple[int, int] = (640, 480), seed: int = 3) -> np.ndarray:
    """(H, W, 3) textured green ground: a backdrop for drawn roofs."""
    image = smooth_texture(size, seed=seed)
    return cv2.addWeighted(image, 0.4, np.full_like(image, (90, 120, 60)), 0.6, 0)


def test_object_outline_finds_a_drawn_roof_on_textured_ground():
    image = roof_scene()
    roof = (260, 150, 380, 250)
    cv2.rectangle(image, roof[:2], (roof[2] - 1, roof[3] - 1), (200, 60, 50), thickness=-1)
    # A ridge line and a chimney: the object is not a flat colour.
    cv2.line(image, (260, 200), (379, 200), (150, 40, 40), thickness=2)
    cv2.rectangle(image, (300, 165), (310, 175), (80, 80, 80), thickness=-1)
    window = outline_bounds(object_outline(image, (340.0, 220.0)))
    # The fallback square around this click would score about 0.5.
    assert box_iou(window, roof) > 0.8


def test_a_diagonal_roof_maps_to_its_own_box_not_its_windows():
    """A photo taken at a 45 degree heading: the roof's box in the reference is the box of the roof, not of its bounds.

    Carrying the photo's axis-aligned window through the homography instead
    would give a box four times the roof's area (IoU about 0.25).
    """
    roof_on_ground = (60.0, 60.0, 140.0, 140.0)  # reference pixels, a 80 x 80 square roof
    angle = np.deg2rad(45.0)
    # Reference pixels -> photo pixels: rotate 45 degrees and zoom 2x about the roof's centre.
    rotate = 2.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    to_photo = np.eye(3)
    to_photo[:2, :2], to_photo[:2, 2] = rotate, np.array([320.0, 240.0]) - rotate @ np.array([100.0, 100.0])
    roof_in_photo = project(to_photo, window_corners(roof_on_ground))[0]
    image = roof_scene()
    cv2.fillPoly(image, [np.round(roof_in_photo - 0.5).astype(np.int32)], (200, 60, 50))
    outline = object_outline(image, (320.0, 240.0))
    box_on_ground = outline_bounds(project(np.linalg.inv(to_photo), outline)[0])
    assert box_iou(box_on_ground, roof_on_ground) > 0.8
    window_on_ground = outline_bounds(project(np.linalg.inv(to_photo), window_corners(outline_bounds(outline)))[0])
    assert box_iou(window_on_ground, roof_on_ground) < 0.4


def test_object_outline_falls_back_to_a_disc_on_a_featureless_image():
    flat = np.full((300, 400, 3), 128, dtype=np.uint8)
    click = (50.0, 280.0)
    outline = object_outline(flat, click)
    np.testing.assert_allclose(outline, fallback_outline((400, 300), click))
    # The fallback scales with the image, stays inside it, and is round: the same size at any heading.
    x1, y1, x2, y2 = outline_bounds(outline)
    assert x2 - x1 == pytest.approx(0.25 * 300) and 0 <= x1 and y2 <= 300
    radii = np.hypot(*(outline - outline.mean(axis=0)).T)
    np.testing.assert_allclose(radii, 0.125 * 300)


def test_click_outside_the_photo_is_a_usage_error(reference):
    with pytest.raises(UsageError, match="outside the query image"):
        object_outline(reference, (600.0, 10.0))
