"""``smgeo info``: what a model is: config, parameters, GFLOPs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from smgeo_cli.commands.options import JsonOption
from smgeo_cli.errors import UsageError


def info_command(
    weights: Path = typer.Option(None, "--weights", help="Weights folder (config.json + model.safetensors)."),
    config: str = typer.Option(None, "--config", help="Or a config alone (name under models/ or a JSON path): untrained."),
    json_output: bool = JsonOption,
) -> None:
    """Config, parameter count and GFLOPs per query at the configured input sizes."""
    if (weights is None) == (config is None):
        raise UsageError("give exactly one of --weights DIR or --config NAME")

    import torch

    from smgeo_cli.model.complexity import measure
    from smgeo_cli.model.config import resolve_config
    from smgeo_cli.model.smgeo import SMGeo
    from smgeo_cli.model.weights import load_model
    if weights:
        model = load_model(weights)
    else:
        # Sparse-MoE FLOPs follow the routing, which follows the initial weights: fix them so runs agree.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = SMGeo(resolve_config(config))
    complexity = measure(model)
    summary = {"config": model.config.to_dict(), **dataclasses.asdict(complexity)}
    if json_output:
        typer.echo(json.dumps(summary))
        return
    cfg = model.config
    table = Table(title=f"{cfg.name}" + (f" ({weights})" if weights else " (untrained)"), show_header=False)
    table.add_row("inputs", f"query {cfg.query_size}px, reference {cfg.ref_size}px at {cfg.ref_gsd_m} m/px")
    table.add_row("backbone", f"Swin embed {cfg.embed_dim}, depths {list(cfg.depths)}, heads {list(cfg.num_heads)}, window {cfg.window_size}"
                  + ("" if cfg.shared_backbone else " (separate per view)"))
    blocks = "; ".join(f"stage {stage} blocks {list(b)}" for stage, b in sorted(cfg.moe_blocks.items()))
    moe = f"{cfg.num_experts} experts, top-{cfg.top_k} ({blocks})" if cfg.use_moe else "off (dense FFN)"
    table.add_row("GMoE", moe)
    table.add_row("fusion", f"query-guided, stride {cfg.fusion_stride}" if cfg.use_fusion else f"concat, stride {cfg.fusion_stride}")
    table.add_row("parameters", f"{complexity.parameters / 1e6:.2f} M")
    table.add_row("GFLOPs per query", f"{complexity.gflops_per_query:.2f} (reference tile {complexity.gflops_reference:.2f} "
                  f"+ query and head {complexity.gflops_query:.2f})")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
