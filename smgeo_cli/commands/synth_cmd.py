"""``smgeo synth``: synthetic drone/satellite training pairs from the user's own georeferenced rasters."""

from __future__ import annotations

from pathlib import Path

import typer

from smgeo_cli.commands.options import QuietOption
from smgeo_cli.commands.progress import progress_bar
from smgeo_cli.data.synth import DEFAULT_GSD_M, split_counts, write_synth_dataset


def synth_command(
    rasters: list[Path] = typer.Argument(..., help="Georeferenced rasters; several dates of one place are paired."),
    out: Path = typer.Option(..., "--out", help="Folder to write the pairs to (CVOGL layout)."),
    n: int = typer.Option(..., "--n", min=1, help="Number of pairs, all splits together."),
    val_frac: float = typer.Option(0.1, "--val-frac", help="Fraction of pairs for validation (ground kept apart)."),
    test_frac: float = typer.Option(0.1, "--test-frac", help="Fraction of pairs for testing (ground kept apart)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and inputs, same pairs."),
    query_size: int = typer.Option(256, "--query-size", min=32, help="Drone view side, pixels."),
    ref_size: int = typer.Option(1024, "--ref-size", min=64, help="Reference tile side, pixels."),
    gsd: float = typer.Option(
        None, "--gsd", help=f"Reference tile metres per pixel [default: {DEFAULT_GSD_M}, or the raster's if coarser]."
    ),
    quiet: bool = QuietOption,
) -> None:
    """Write training pairs: an object-like region in a reference tile and a rendered drone view of it."""
    total = sum(split_counts(n, val_frac, test_frac).values())
    with progress_bar(quiet) as progress:
        task = progress.add_task("synth", total=total, info="") if progress else None

        def advance(split: str) -> None:
            if progress:
                progress.update(task, advance=1, info=split)

        summary = write_synth_dataset(
            rasters, out, n, val_frac=val_frac, test_frac=test_frac, seed=seed,
            query_size=query_size, ref_size=ref_size, gsd_m=gsd, on_pair=advance,
        )
    counts = ", ".join(f"{split}: {count} pairs" for split, count in summary.counts.items())
    typer.echo(f"{counts}; {summary.fallbacks} random fallback boxes; written to {out}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
