"""``smgeo mine``: real training pairs mined from drone photos matched by homography (with each other or a raster)."""

from __future__ import annotations

from pathlib import Path

import typer

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
from smgeo_cli.defaults import DEFAULT_NEIGHBOURS
from smgeo_cli.errors import UsageError


def mine_command(
    photos: list[Path] = typer.Argument(
        ..., help="Drone photos: overlapping shots of one flight, or photos of the ground of --ref."
    ),
    out: Path = PairsOutOption,
    ref: Path = MineRefOption,
    photo_scale: float = PhotoScaleOption,
    neighbours: int = NeighboursOption,
    n: int = PairCountOption,
    val_frac: float = ValFracOption,
    test_frac: float = TestFracOption,
    seed: int = SeedOption,
    query_size: int = QuerySizeOption,
    ref_size: int = RefSizeOption,
    gsd: float = TileGsdOption,
    quiet: bool = QuietOption,
) -> None:
    """Write training pairs mined from real photos: a tile of one image, and another's view of an object in it."""
    if neighbours is not None and ref is not None:
        raise UsageError("--neighbours goes with photos alone (with --ref each photo is matched to the raster)")
    if ref is None and gsd is not None:
        raise UsageError("--gsd sets the tile GSD of --ref; for photos alone use --photo-scale")

    from smgeo_cli.data.cvogl import make_dataset_folders
    from smgeo_cli.data.mine import mine_photos, mine_reference
    from smgeo_cli.data.pairs import check_pair_options

    # Bad options and a bad --out fail before any photo is read.
    check_pair_options(n, val_frac, test_frac, gsd)
    make_dataset_folders(out)
    photo_scale = 1.0 if photo_scale is None else photo_scale
    options = dict(val_frac=val_frac, test_frac=test_frac, seed=seed, query_size=query_size, ref_size=ref_size)
    with pair_progress(quiet, "mine", n) as update:

        def matched(done: int, pairs: int) -> None:
            update(info=f"matched {done}/{pairs} image pairs")

        if ref is None:
            summary = mine_photos(
                photos, out, n, photo_scale=photo_scale,
                neighbours=DEFAULT_NEIGHBOURS if neighbours is None else neighbours,
                on_photo=lambda done, total: update(info=f"described {done}/{total} photos"),
                on_match=matched, on_pair=lambda split: update(1, split), **options,
            )
        else:
            summary = mine_reference(
                photos, ref, out, n, gsd_m=gsd, photo_scale=photo_scale,
                on_match=matched, on_pair=lambda split: update(1, split), **options,
            )
    fits = f"{summary.tried} image pairs tried, {summary.weak} rejected (weak or no fit)"
    typer.echo(pairs_written(summary.counts, summary.fallbacks, out, fits))


def register(app: typer.Typer) -> None:
    app.command("mine")(mine_command)
