"""Shared fixtures: small model configs that build and run in milliseconds."""

from __future__ import annotations

import sys

import pytest
import torch

from smgeo_cli.cli import main
from smgeo_cli.model.config import SMGeoConfig
from smgeo_cli.model.smgeo import SMGeo
from smgeo_cli.model.weights import save_weights


def tiny_config(**changes) -> SMGeoConfig:
    """A whole SMGeo (all stages, GMoE, fusion) at toy width and input size."""
    base = dict(
        name="tiny",
        query_size=64,
        ref_size=128,
        embed_dim=16,
        depths=(1, 1, 2, 1),
        num_heads=(1, 1, 2, 2),
        window_size=4,
        moe_blocks={1: (0,), 2: (0, 1), 3: (0,)},
        num_experts=4,
        top_k=2,
        fusion_dim=32,
        head_dim=32,
        drop_path_rate=0.0,
    )
    base.update(changes)
    return SMGeoConfig(**base)


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A weights folder of an untrained tiny SMGeo: for pipeline tests, where accuracy does not matter.

    Its parameters are jittered away from the initialisation, whose near-flat
    heatmap ranks hits by float rounding: tests comparing runs need clear ranks.
    """
    torch.manual_seed(0)
    model = SMGeo(tiny_config())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    folder = tmp_path_factory.mktemp("weights") / "tiny"
    save_weights(model, folder)
    return folder


@pytest.fixture
def tiny() -> SMGeoConfig:
    torch.manual_seed(0)
    return tiny_config()


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`smgeo ARGS` in this process through the real entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["smgeo", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
