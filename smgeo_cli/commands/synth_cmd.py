"""``smgeo synth``: training pairs from the user's own imagery: rendered from rasters, or mined from photos."""

from __future__ import annotations

from pathlib import Path

import typer

from smgeo_cli.commands.options import QuietOption, number
from smgeo_cli.commands.progress import progress_bar
from smgeo_cli.defaults import DEFAULT_NEIGHBOURS, DEFAULT_SYNTH_GSD_M
from smgeo_cli.errors import UsageError


def synth_command(
    rasters: list[Path] = typer.Argument(
        ..., help="Georeferenced rasters; several dates of one place are paired. With --mine: drone photos."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the pairs to (CVOGL layout)."),
    n: int = typer.Option(..., "--n", min=1, help="Number of pairs, all splits together."),
    val_frac: float = typer.Option(
        0.1, "--val-frac", parser=number(0.0, 1.0), help="Fraction of pairs for validation (ground kept apart)."
    ),
    test_frac: float = typer.Option(
        0.1, "--test-frac", parser=number(0.0, 1.0), help="Fraction of pairs for testing (ground kept apart)."
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed and inputs, same pairs."),
    query_size: int = typer.Option(256, "--query-size", min=32, help="Drone view side, pixels."),
    ref_size: int = typer.Option(1024, "--ref-size", min=64, help="Reference tile side, pixels."),
    gsd: float = typer.Option(
        None,
        "--gsd",
        parser=number(0.0, low_open=True),
        help=f"Reference tile metres per pixel (default {DEFAULT_SYNTH_GSD_M}, or the raster's if coarser).",
    ),
    mine: bool = typer.Option(
        False, "--mine", help="Mine real pairs from overlapping photos (or photos and --ref) matched by homography."
    ),
    ref: Path = typer.Option(None, "--ref", help="With --mine: georeferenced raster the photos are matched against."),
    photo_scale: float = typer.Option(
        None,
        "--photo-scale",
        parser=number(0.0, low_open=True),
        help="With --mine: photo pixels per tile pixel; objects are 20-300 tile px (default 1).",
    ),
    neighbours: int = typer.Option(
        None,
        "--neighbours",
        min=0,
        help=f"With --mine (photos only): match each photo with its K nearest, by GPS, else by order (default "
        f"{DEFAULT_NEIGHBOURS}; 0: every pair).",
        metavar="K",
    ),
    quiet: bool = QuietOption,
) -> None:
    """Write training pairs: an object-like region in a reference tile and a drone view of it (rendered or mined)."""
    if not mine and (ref is not None or photo_scale is not None):
        raise UsageError("--ref and --photo-scale go with --mine")
    if neighbours is not None and (not mine or ref is not None):
        raise UsageError("--neighbours goes with --mine on photos alone (with --ref each photo is matched to the raster)")
    if mine and ref is None and gsd is not None:
        raise UsageError("--gsd sets the tile GSD of rasters; with --mine use --photo-scale, or --gsd with --ref")
    photo_scale = 1.0 if photo_scale is None else photo_scale

    from smgeo_cli.data.cvogl import make_dataset_folders
    from smgeo_cli.data.mine import mine_photos, mine_reference
    from smgeo_cli.data.pairs import split_counts
    from smgeo_cli.data.synth import write_synth_dataset

    total = sum(split_counts(n, val_frac, test_frac).values())
    make_dataset_folders(out)
    with progress_bar(quiet) as progress:
        task = progress.add_task("mine" if mine else "synth", total=total, info="") if progress else None

        def advance(split: str) -> None:
            if progress:
                progress.update(task, advance=1, info=split)

        def described(done: int, photos: int) -> None:
            if progress:
                progress.update(task, info=f"described {done}/{photos} photos")

        def matched(done: int, pairs: int) -> None:
            if progress:
                progress.update(task, info=f"matched {done}/{pairs} image pairs")

        options = dict(
            val_frac=val_frac, test_frac=test_frac, seed=seed, query_size=query_size, ref_size=ref_size, on_pair=advance
        )
        if not mine:
            summary = write_synth_dataset(rasters, out, n, gsd_m=gsd, **options)
        elif ref is None:
            summary = mine_photos(
                rasters, out, n, photo_scale=photo_scale,
                neighbours=DEFAULT_NEIGHBOURS if neighbours is None else neighbours,
                on_photo=described, on_match=matched, **options,
            )
        else:
            summary = mine_reference(
                rasters, ref, out, n, gsd_m=gsd, photo_scale=photo_scale, on_match=matched, **options
            )
    counts = ", ".join(f"{split}: {count} pairs" for split, count in summary.counts.items())
    if mine:
        counts += f"; {summary.tried} image pairs tried, {summary.weak} rejected (weak or no fit)"
    typer.echo(f"{counts}; {summary.fallbacks} random fallback boxes; written to {out}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
