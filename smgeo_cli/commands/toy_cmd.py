"""``smgeo toy-data``: a small generated dataset with known answers, to try the tool end to end."""

from __future__ import annotations

from pathlib import Path

import typer


def toy_data_command(
    out: Path = typer.Argument(..., help="Folder to write the dataset to (CVOGL layout)."),
    scenes: int = typer.Option(8, "--scenes", min=1, help="Scenes per split; each gives two pairs (a click on each object)."),
    splits: str = typer.Option("train,val,test", "--splits", help="Comma-separated split names."),
    query_size: int = typer.Option(256, "--query-size", min=32),
    ref_size: int = typer.Option(1024, "--ref-size", min=64),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write scenes of two coloured shapes on textured ground, each seen from a warped 'drone' view."""
    from smgeo_cli.data.toy import write_toy_dataset

    counts = write_toy_dataset(
        out, scenes, [s.strip() for s in splits.split(",") if s.strip()], query_size=query_size, ref_size=ref_size, seed=seed
    )
    typer.echo(", ".join(f"{split}: {n} pairs" for split, n in counts.items()) + f" written to {out}")


def register(app: typer.Typer) -> None:
    app.command("toy-data")(toy_data_command)
