"""Training targets and losses behave as CenterNet-style training relies on."""

from __future__ import annotations

import torch

from conftest import tiny_config
from smgeo_cli.train.loop import TrainOptions, lr_at
from smgeo_cli.train.losses import correspondence_loss, focal_heatmap_loss, smgeo_loss
from smgeo_cli.train.targets import center_targets


def test_targets_put_a_box_sized_gaussian_on_the_centre_cell():
    boxes = torch.tensor([[32.0, 32.0, 64.0, 48.0], [0.0, 0.0, 128.0, 128.0]])
    targets = center_targets(boxes, grid_size=8, stride=16)
    assert targets.cols.tolist() == [3, 4] and targets.rows.tolist() == [2, 4]
    torch.testing.assert_close(targets.offset, torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    assert (targets.heatmap.flatten(1) == 1).sum(dim=1).tolist() == [1, 1]
    # The big box's Gaussian is wider: more cells above 0.1.
    assert (targets.heatmap[1] > 0.1).sum() > (targets.heatmap[0] > 0.1).sum()


def test_focal_loss_prefers_the_right_peak_and_forgives_near_misses():
    target = center_targets(torch.tensor([[40.0, 40.0, 90.0, 90.0]]), 8, 16).heatmap
    right = torch.logit(target.clamp(1e-3, 1 - 1e-3))
    one_cell_off = torch.roll(right, shifts=1, dims=-1)
    far_off = torch.roll(right, shifts=4, dims=-1)
    losses = [focal_heatmap_loss(x, target) for x in (right, one_cell_off, far_off)]
    assert losses[0] < losses[1] < losses[2]


def _flat_maps(config, moe_balance: float = 0.0, moe_entropy: float = 0.0) -> tuple[dict, int]:
    """Head outputs for a batch of 2 that predict the same box everywhere, and the grid size."""
    grid = config.ref_size // config.fusion_stride
    maps = {
        "heatmap": torch.zeros(2, 1, grid, grid),
        "offset": torch.full((2, 2, grid, grid), 0.5),
        "log_size": torch.zeros(2, 2, grid, grid),
        "moe_balance": torch.tensor(moe_balance),
        "moe_entropy": torch.tensor(moe_entropy),
    }
    return maps, grid


def test_total_loss_weights_every_term_from_the_config():
    config = tiny_config()
    maps, grid = _flat_maps(config, moe_balance=1.5, moe_entropy=0.7)
    targets = center_targets(torch.tensor([[10.0, 10.0, 50.0, 40.0], [60.0, 70.0, 120.0, 127.0]]), grid, config.fusion_stride)
    terms = smgeo_loss(maps, targets, config)
    doubled = smgeo_loss(maps, targets, config.replace(moe_balance_weight=2 * config.moe_balance_weight))
    torch.testing.assert_close(doubled["loss"] - terms["loss"], config.moe_balance_weight * torch.tensor(1.5))
    assert all(terms[name] > 0 for name in ("heatmap", "offset", "box_l1", "giou"))


def test_random_fallback_boxes_train_the_centre_but_not_the_box_size():
    config = tiny_config()
    maps, grid = _flat_maps(config)
    object_box = [10.0, 10.0, 50.0, 40.0]
    has_extent = torch.tensor([True, False])
    # Only the random box's size differs (same centre): the box terms must not see it.
    small, large = (
        smgeo_loss(maps, center_targets(torch.tensor([object_box, box]), grid, config.fusion_stride), config,
                   box_has_extent=has_extent)
        for box in ([80.0, 80.0, 96.0, 96.0], [40.0, 40.0, 136.0, 136.0])
    )
    alone = smgeo_loss(maps, center_targets(torch.tensor([object_box]), grid, config.fusion_stride), config)
    for name in ("box_l1", "giou"):
        torch.testing.assert_close(small[name], alone[name])
        torch.testing.assert_close(large[name], alone[name])
    assert small["heatmap"] != large["heatmap"]  # the centre's Gaussian still trains on it
    none = smgeo_loss(maps, center_targets(torch.tensor([object_box] * 2), grid, config.fusion_stride), config,
                      box_has_extent=torch.tensor([False, False]))
    assert none["giou"] == 0 and none["box_l1"] == 0


def test_learning_rate_warms_up_then_decays_to_the_floor():
    options = TrainOptions(lr=1e-3, min_lr=1e-5)
    rates = [lr_at(step, 100, 10, options) for step in range(100)]
    assert rates[0] < rates[5] < rates[9] == 1e-3
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert abs(lr_at(100, 100, 10, options) - 1e-5) < 1e-12


def _shifted_features(shift_cells: int, dim: int = 16, cells: int = 8):
    """Random reference features and a query that sees the same cells moved left by shift_cells."""
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(1, dim, cells, cells, generator=generator)
    query = torch.roll(reference, shifts=-shift_cells, dims=-1)
    return query, reference


def test_correspondence_loss_rewards_features_that_agree_where_the_homography_says():
    stride, shift = 16, 2
    query, reference = _shifted_features(shift)
    # Reference pixel x lands at query pixel x - shift * stride.
    true_map = torch.tensor([[[1.0, 0.0, -shift * stride], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    wrong_map = torch.tensor([[[1.0, 0.0, 3.0 * stride], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    right = correspondence_loss(query, reference, true_map, stride, temperature=0.1)
    wrong = correspondence_loss(query, reference, wrong_map, stride, temperature=0.1)
    assert right < 0.05 < wrong
    # A pair without a homography gives no labels and no loss, but keeps its gradient path.
    unknown = correspondence_loss(query.requires_grad_(), reference, torch.full((1, 3, 3), float("nan")), stride)
    assert unknown == 0 and unknown.requires_grad


def test_correspondence_loss_ignores_cells_that_map_outside_the_other_view():
    stride = 16
    query, reference = _shifted_features(0)
    # Everything lands far outside: no labelled cell, so no loss however the features look.
    away = torch.tensor([[[1.0, 0.0, 1000.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    assert correspondence_loss(query, reference, away, stride) == 0
