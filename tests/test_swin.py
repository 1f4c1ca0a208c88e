"""The Swin backbone: same outputs as timm's from the same weights, and checkpoints of either layout load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smgeo_cli.model.swin import Swin, adapt_state_dict

REFERENCE = Path(__file__).parent / "data" / "model" / "swin_timm_reference.safetensors"


def reference_swin(window_size: int = 4) -> Swin:
    # The architecture tests/data/model/make_swin_timm_reference.py built with timm.
    return Swin(
        img_size=128, patch_size=4, in_chans=3, embed_dim=8, depths=[2, 2, 2, 1], num_heads=[1, 2, 2, 4],
        window_size=window_size, mlp_ratio=4.0,
    ).eval()


@pytest.mark.parametrize("case", ["square", "padded"])
def test_stage_outputs_match_timm_on_timm_weights(case):
    # "padded": 40 x 72 px gives grids (10 x 18, 5 x 9, 3 x 5, 2 x 3) that are padded to whole windows,
    # shifted and masked in every stage; SMGeo weights written while the backbone was timm's rely on this.
    tensors = load_file(REFERENCE)
    weights = {key.removeprefix("weights."): value for key, value in tensors.items() if key.startswith("weights.")}
    swin = reference_swin()
    swin.load_state_dict(adapt_state_dict(weights, swin))
    with torch.no_grad():
        stages = swin.forward_stages(swin.patch_embed(tensors[f"{case}.input"]))
    for index, features in enumerate(stages):
        torch.testing.assert_close(features, tensors[f"{case}.stage{index}"], atol=1e-5, rtol=1e-4)


def test_microsoft_layout_and_other_windows_are_adapted():
    source = reference_swin(window_size=7)
    state = {key: value.clone() for key, value in source.state_dict().items()}
    state["layers.0.blocks.0.attn.relative_position_bias_table"].fill_(0.5)
    # Microsoft's checkpoints end each stage with the merging that starts the next one here, and carry a classifier.
    original = {re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key): value
                for key, value in state.items()}
    original |= {"norm.weight": torch.ones(64), "head.weight": torch.zeros(10, 64), "head.bias": torch.zeros(10)}
    assert "layers.0.downsample.reduction.weight" in original

    target = reference_swin(window_size=4)
    target.load_state_dict(adapt_state_dict(original, target))  # strict: every key renamed, nothing left over
    torch.testing.assert_close(target.layers[1].downsample.reduction.weight, state["layers.1.downsample.reduction.weight"])
    # Window 7's 13 x 13 table, resampled to window 4's 7 x 7, keeps what it learnt.
    table = target.layers[0].blocks[0].attn.relative_position_bias_table
    torch.testing.assert_close(table, torch.full(((2 * 4 - 1) ** 2, 1), 0.5))
