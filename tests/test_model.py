"""SMGeo forward, decode, ablation switches, weights round trips."""

from __future__ import annotations

import json
import math
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from smgeo_cli.errors import UsageError, WeightsError
from smgeo_cli.model.config import MODELS_DIR, SMGeoConfig, resolve_config
from smgeo_cli.model.gmoe import GridMoE
from smgeo_cli.model.head import decode_detections
from smgeo_cli.model.smgeo import SMGeo
from smgeo_cli.model.swin import Swin
from smgeo_cli.model.weights import load_model, save_weights
from smgeo_cli.train.targets import center_targets


def inputs(config: SMGeoConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, 3, config.query_size, config.query_size, generator=g)
    reference = torch.randn(batch, 3, config.ref_size, config.ref_size, generator=g)
    click = torch.rand(batch, 2, generator=g) * config.query_size
    return query, click, reference


def test_forward_gives_head_maps_on_the_fusion_grid_and_moe_losses(tiny):
    model = SMGeo(tiny)
    maps = model(*inputs(tiny))
    grid = tiny.ref_size // tiny.fusion_stride
    assert maps["heatmap"].shape == (2, 1, grid, grid)
    assert maps["offset"].shape == maps["log_size"].shape == (2, 2, grid, grid)
    assert maps["moe_balance"].requires_grad and maps["moe_entropy"].requires_grad


def test_prediction_depends_on_the_query_and_on_the_click(tiny):
    model = SMGeo(tiny).eval()
    query, click, reference = inputs(tiny, batch=1)
    with torch.no_grad():
        base = model(query, click, reference)["heatmap"]
        moved_click = model(query, tiny.query_size - click, reference)["heatmap"]
        other_query = model(torch.flip(query, dims=[-1]), click, reference)["heatmap"]
    assert (base - moved_click).abs().max() > 1e-4
    assert (base - other_query).abs().max() > 1e-4


def test_shared_backbone_has_one_set_of_stages_and_a_patch_embedding_per_view(tiny):
    shared = SMGeo(tiny)
    separate = SMGeo(tiny.replace(shared_backbone=False))
    assert shared.encoder.query_backbone is None
    assert shared.encoder.query_patch_embed.proj.in_channels == 4
    assert separate.encoder.query_backbone.patch_embed.proj.in_channels == 4
    n_shared = sum(p.numel() for p in shared.encoder.parameters())
    n_separate = sum(p.numel() for p in separate.encoder.parameters())
    assert n_separate > 1.8 * n_shared


@pytest.mark.parametrize(
    "switches", [dict(use_moe=False), dict(shared_backbone=False), dict(use_fusion=False)], ids=["dense", "separate", "concat"]
)
def test_ablation_switches_build_and_train(tiny, switches):
    config = tiny.replace(**switches)
    model = SMGeo(config)
    has_moe = any(isinstance(m, GridMoE) for m in model.modules())
    assert has_moe == config.use_moe
    maps = model(*inputs(config))
    (maps["heatmap"].mean() + maps["moe_balance"]).backward()


def test_moe_sits_in_the_configured_blocks_and_shares_one_pool_per_stage(tiny):
    model = SMGeo(tiny)
    stages = model.encoder.reference_backbone.layers
    for stage_index, stage in enumerate(stages):
        chosen = tiny.moe_blocks.get(stage_index, ())
        for block_index, block in enumerate(stage.blocks):
            assert isinstance(block.mlp, GridMoE) == (block_index in chosen)
    pools = {id(b.mlp.pool) for b in stages[2].blocks}
    assert len(pools) == 1


def test_decode_inverts_the_training_targets(tiny):
    stride, grid = tiny.fusion_stride, tiny.ref_size // tiny.fusion_stride
    boxes = torch.tensor([[10.0, 20.0, 50.0, 44.0], [70.5, 3.0, 127.0, 90.25]])
    targets = center_targets(boxes, grid, stride)
    assert targets.heatmap.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0]
    maps = {
        "heatmap": torch.logit(targets.heatmap.clamp(1e-4, 1 - 1e-4)),
        "offset": targets.offset[:, :, None, None].expand(-1, -1, grid, grid),
        "log_size": torch.log((boxes[:, 2:] - boxes[:, :2]) / stride)[:, :, None, None].expand(-1, -1, grid, grid),
    }
    decoded, scores = decode_detections(maps, stride, top_k=1)
    torch.testing.assert_close(decoded[:, 0], boxes, atol=0.02, rtol=0)
    assert scores.min() > 0.99


def test_weights_round_trip_in_fp32_and_fp16(tmp_path, tiny):
    model = SMGeo(tiny).eval()
    query, click, reference = inputs(tiny, batch=1)
    expected = model.detect(query, click, reference=reference, top_k=3)
    save_weights(model, tmp_path / "fp32")
    save_weights(model, tmp_path / "fp16", half=True)
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "fp32" / "model.safetensors").stat().st_size
    for folder, tolerance in (("fp32", 1e-6), ("fp16", 0.05)):
        loaded = load_model(tmp_path / folder)
        assert loaded.config == tiny
        boxes, scores = loaded.detect(query, click, reference=reference, top_k=3)
        torch.testing.assert_close(scores, expected[1], atol=tolerance, rtol=0)


def test_weights_that_do_not_fit_the_config_are_a_clear_error(tmp_path, tiny):
    save_weights(SMGeo(tiny), tmp_path / "w")
    tiny.replace(embed_dim=24).save(tmp_path / "w" / "config.json")
    with pytest.raises(WeightsError, match="do not fit"):
        load_model(tmp_path / "w")
    with pytest.raises(WeightsError, match="no such weights folder"):
        load_model(tmp_path / "missing")


def test_backbone_starts_from_an_image_classifiers_swin_state_dict(tmp_path, tiny):
    from safetensors.torch import save_file

    # A Swin of the same widths but ImageNet's window 7 (tables must be resized), with its classifier.
    imagenet_like = Swin(224, tiny.patch_size, 3, tiny.embed_dim, tiny.depths, tiny.num_heads, 7, tiny.mlp_ratio)
    state = {k: v.contiguous() for k, v in imagenet_like.state_dict().items()}
    state |= {"head.fc.weight": torch.zeros(10, tiny.embed_dim * 8), "head.fc.bias": torch.zeros(10)}
    save_file(state, tmp_path / "swin.safetensors")
    from smgeo_cli.model.encoder import read_backbone_weights

    model = SMGeo(tiny)
    model.encoder.load_backbone_state(read_backbone_weights(tmp_path / "swin.safetensors"), "test")
    ref_embed = model.encoder.reference_backbone.patch_embed.proj.weight
    torch.testing.assert_close(ref_embed, state["patch_embed.proj.weight"])
    query_embed = model.encoder.query_patch_embed.proj.weight
    torch.testing.assert_close(query_embed[:, :3], state["patch_embed.proj.weight"])
    assert query_embed[:, 3].abs().sum() == 0
    expert = model.encoder.reference_backbone.layers[1].blocks[0].mlp.pool.experts[0]
    torch.testing.assert_close(expert.fc1.weight, state["layers.1.blocks.0.mlp.fc1.weight"])

    with pytest.raises(WeightsError, match="do not fit"):
        SMGeo(tiny.replace(embed_dim=24)).encoder.load_backbone_state(state, "test")


def test_bundled_configs_are_the_paper_sizes_and_a_cpu_sized_nano():
    t = resolve_config("smgeo-t")
    assert (t.embed_dim, t.depths, t.num_heads, t.window_size) == (96, (2, 2, 6, 2), (3, 6, 12, 24), 8)
    assert (t.query_size, t.ref_size, t.num_experts, t.top_k) == (256, 1024, 6, 2)
    assert t.moe_blocks == {1: (0, 1), 2: (0, 2, 4), 3: (0, 1)}
    nano = resolve_config("smgeo-nano")
    assert nano.ref_size <= 512 and nano.query_size <= 128
    with pytest.raises(UsageError, match="no model config"):
        resolve_config("smgeo-huge")
    with pytest.raises(UsageError, match="unknown model config keys"):
        SMGeoConfig.from_dict({**t.to_dict(), "use_mo": False})
    with pytest.raises(UsageError, match="top_k"):
        t.replace(top_k=7)
    assert math.isclose(t.ref_size / t.fusion_stride, 64)


def test_the_wheel_ships_every_model_folder_whole():
    # Installed from a wheel, configs and the bundled weights come from pyproject's data-files, not the checkout.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = MODELS_DIR.parent
    data_files = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {Path(target).name: patterns for target, patterns in data_files.items()}
    for folder in MODELS_DIR.iterdir():
        assert folder.name in shipped, f"models/{folder.name} is not in pyproject's data-files"
        for file in folder.iterdir():
            relative = file.relative_to(root).as_posix()
            assert any(fnmatch(relative, pattern) for pattern in shipped[folder.name]), relative


def test_info_of_an_untrained_config_gives_the_same_figures_every_run(monkeypatch, capsys):
    # Sparse-MoE FLOPs follow the routing of the initial weights; the README quotes them.
    runs = []
    for _ in range(2):
        code, stdout, _ = run_cli(monkeypatch, capsys, "info", "--config", "smgeo-nano", "--json")
        assert code == 0
        runs.append(json.loads(stdout))
    assert runs[0] == runs[1]
    assert runs[0]["parameters"] == 5_173_885 and runs[0]["gflops_per_query"] > runs[0]["gflops_query"] > 0
    code, _, stderr = run_cli(monkeypatch, capsys, "info", "--config", "smgeo-nano", "--weights", "x")
    assert code == 2 and "exactly one" in stderr


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"embed_dim": "48"}, "embed_dim='48' (expected a whole number)"),  # once a 3.7 TB allocation
        ({"depths": None}, "depths=None"),
        ({"num_heads": 4}, "num_heads=4"),
        ({"use_moe": "no"}, "use_moe='no' (expected true or false)"),
        ({"moe_blocks": [[1, 0]]}, "moe_blocks="),
        ({"ref_size": 0}, "ref_size=0 must be at least 1"),
        ({"ref_gsd_m": float("nan")}, "ref_gsd_m=nan"),
        ({"drop_path_rate": 1.5}, "drop_path_rate=1.5 must be in [0, 1)"),
        ({"giou_weight": -1.0}, "giou_weight=-1.0 must be at least 0"),
        ({"num_heads": [1, 1, 3, 2]}, "stage 2 is 64 wide, which 3 heads do not divide"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_are_named_before_anything_is_built(tiny, change, named):
    with pytest.raises(UsageError, match=re.escape(named)):
        SMGeoConfig.from_dict({**tiny.to_dict(), **change})


def test_a_config_file_holding_a_list_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(UsageError, match="JSON object"):
        SMGeoConfig.load(path)


@pytest.mark.parametrize(
    "change", [{"lr": float("nan")}, {"lr": -1e-4}, {"weight_decay": -1.0}, {"warmup_epochs": float("inf")},
               {"min_lr": 1.0}, {"epochs": 0}, {"num_workers": -1}],  # fmt: skip
)
def test_training_options_out_of_range_are_refused(change):
    from smgeo_cli.train.loop import TrainOptions

    with pytest.raises(UsageError, match=f"training option {next(iter(change))}"):
        TrainOptions(**change)
