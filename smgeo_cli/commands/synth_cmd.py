"""``smgeo synth``: training pairs rendered from the user's own georeferenced imagery.

``synth --mine`` is the former name of ``smgeo mine``, kept for one release.
"""

from __future__ import annotations

from pathlib import Path

import typer

from smgeo_cli.commands.mine_cmd import mine_command
from smgeo_cli.commands.options import (
    MineRefOption,
    NeighboursOption,
    PairCountOption,
    PairsOutOption,
    PhotoScaleOption,
    QuerySizeOption,
    QuietOption,
    RefSizeOption,
    SeedOption,
    TestFracOption,
    TileGsdOption,
    ValFracOption,
)
from smgeo_cli.commands.pair_output import pair_progress, pairs_written
from smgeo_cli.errors import UsageError

DEPRECATED_MINE = "synth --mine is now `smgeo mine` (same photos and options); --mine goes in the next release"


def synth_command(
    rasters: list[Path] = typer.Argument(..., help="Georeferenced rasters; several dates of one place are paired."),
    out: Path = PairsOutOption,
    n: int = PairCountOption,
    val_frac: float = ValFracOption,
    test_frac: float = TestFracOption,
    seed: int = SeedOption,
    query_size: int = QuerySizeOption,
    ref_size: int = RefSizeOption,
    gsd: float = TileGsdOption,
    mine: bool = typer.Option(False, "--mine", help="Deprecated: use `smgeo mine` (the arguments are then photos)."),
    ref: Path = MineRefOption,
    photo_scale: float = PhotoScaleOption,
    neighbours: int = NeighboursOption,
    quiet: bool = QuietOption,
) -> None:
    """Write training pairs: an object-like region in a reference tile and a drone view of it rendered from a raster."""
    if mine:
        typer.echo(f"smgeo: warning: {DEPRECATED_MINE}", err=True)
        mine_command(
            rasters, out=out, ref=ref, photo_scale=photo_scale, neighbours=neighbours, n=n, val_frac=val_frac,
            test_frac=test_frac, seed=seed, query_size=query_size, ref_size=ref_size, gsd=gsd, quiet=quiet,
        )
        return
    if ref is not None or photo_scale is not None or neighbours is not None:
        raise UsageError("--ref, --photo-scale and --neighbours are options of `smgeo mine`, which mines photos")

    from smgeo_cli.data.cvogl import make_dataset_folders
    from smgeo_cli.data.pairs import check_pair_options
    from smgeo_cli.data.synth import write_synth_dataset

    # Bad options and a bad --out fail before any raster is read.
    check_pair_options(n, val_frac, test_frac, gsd)
    make_dataset_folders(out)
    with pair_progress(quiet, "synth", n) as update:
        summary = write_synth_dataset(
            rasters, out, n, val_frac=val_frac, test_frac=test_frac, seed=seed, query_size=query_size,
            ref_size=ref_size, gsd_m=gsd, on_pair=lambda split: update(1, split),
        )
    typer.echo(pairs_written(summary.counts, summary.fallbacks, out))


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
