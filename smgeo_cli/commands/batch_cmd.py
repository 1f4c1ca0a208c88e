"""``smgeo batch``: every click of a flight located on one raster, into one resumable output layer."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from smgeo_cli.commands.locate_cmd import method_detectors
from smgeo_cli.commands.options import (
    DeviceOption,
    FeaturesOption,
    GsdOption,
    HeadingsOption,
    JsonOption,
    MatchFeatures,
    MaxTilesOption,
    Method,
    MethodOption,
    QuietOption,
    SearchRadiusOption,
    VerifyOption,
    WeightsOption,
    check_output,
    number,
    parse_numbers,
)
from smgeo_cli.commands.progress import progress_bar, stderr_console
from smgeo_cli.errors import SOME_FAILED_EXIT, InputFileError, UsageError
from smgeo_cli.geo.formats import GEOJSON_SUFFIXES, OGR_DRIVERS

if TYPE_CHECKING:
    from rich.table import Table

    from smgeo_cli.batch import BatchStats
    from smgeo_cli.train.distributed import DistContext


def _summed(stats: BatchStats, context: DistContext, seconds: float) -> BatchStats:
    """The counts of all ranks together, over ``seconds`` of wall time."""
    import torch

    from smgeo_cli.batch import BatchStats
    from smgeo_cli.train.distributed import all_reduce_sum

    counts = torch.tensor([getattr(stats, name) for name in stats.COUNTS], dtype=torch.float64)
    counts = all_reduce_sum(counts, context)
    return BatchStats(**{name: int(v) for name, v in zip(stats.COUNTS, counts.tolist())}, seconds=seconds)


def _summary_table(stats: BatchStats) -> Table:
    from rich.table import Table

    table = Table(title="smgeo batch")
    for field in fields(stats):
        table.add_column(field.name.replace("_", " "), justify="right")
    table.add_row(*(f"{v:.1f}" if isinstance(v, float) else str(v) for v in stats.as_dict().values()))
    return table


def batch_command(
    source: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Folder of photos (with --clicks), folder of video frames (with --srt and --clicks), or manifest CSV.",
    ),
    ref: Path = typer.Option(..., "--ref", help="Georeferenced reference raster (GeoTIFF, COG, VRT, ...)."),
    clicks: Path = typer.Option(None, "--clicks", help="CSV image,click_x,click_y[,label,lat,lon,...] for a folder."),
    srt: Path = typer.Option(None, "--srt", help="DJI SRT telemetry of the video the frames came from."),
    fps: float = typer.Option(
        None,
        "--fps",
        parser=number(0.0, low_open=True),
        help="Frames per second the frames were extracted at. Default: one per entry.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output .geojson (EPSG:4326), .gpkg or .fgb (raster CRS)."),
    method: Method = MethodOption,
    features: MatchFeatures = FeaturesOption,
    headings: int = HeadingsOption,
    weights: Path = WeightsOption,
    top_k: int = typer.Option(1, "--top-k", min=1, help="Hits per query, best first."),
    cache_dir: Path = typer.Option(
        None, "--cache-dir", help="Keep tile encodings here for later runs on the same raster."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Skip queries the output's journal already answers (same options required)."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="With --resume: run the queries that failed before again."
    ),
    search_radius: float = SearchRadiusOption,
    no_gps: bool = typer.Option(False, "--no-gps", help="Ignore positions: search the whole raster for every query."),
    bands: str = typer.Option(None, "--bands", help="Raster bands, 1-based: red,green,blue or one grey (e.g. 4,3,2)."),
    gsd: float = GsdOption,
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Tiles per forward pass."),
    max_tiles: int = MaxTilesOption,
    verify: bool = VerifyOption,
    device: str = DeviceOption,
    quiet: bool = QuietOption,
    json_output: bool = JsonOption,
) -> None:
    """Locate every click of a flight on one raster; write one layer, resumable, sharded under torchrun."""
    if retry_failed and not resume:
        raise UsageError("--retry-failed goes with --resume")
    check_output(out, (*GEOJSON_SUFFIXES, *OGR_DRIVERS), "-o")
    band_list = parse_numbers(bands, (1, 3), "--bands", "1 or 3 band numbers, e.g. 1,2,3", kind=int) if bands else None
    if not ref.is_file():
        raise InputFileError(f"--ref {ref}: no such file")

    import torch

    from smgeo_cli.batch import TileCache, build_queries, clear_journals, errors_path, run_batch, write_output
    from smgeo_cli.device import resolve_device, set_cpu_threads
    from smgeo_cli.io import output_lock
    from smgeo_cli.locate import SearchArea
    from smgeo_cli.train.distributed import barrier, init_distributed, shutdown

    queries = build_queries(source, clicks, srt, fps)
    if not queries:
        raise InputFileError(f"{clicks or source}: no queries (the CSV has no data rows)")
    torch_device = resolve_device(device)
    context = init_distributed(torch_device.type)
    try:
        # One run writes an output at a time; rank 0 holds the lock for all ranks.
        with output_lock(out) if context.is_main else nullcontext():
            set_cpu_threads(context.local_world_size)
            if torch_device.type == "cuda" and context.enabled:
                torch_device = torch.device("cuda", context.local_rank)
            if context.is_main and not resume:
                clear_journals(out)
            barrier(context)
            detectors = method_detectors(method, weights, torch_device, features.value, headings)
            cache = TileCache(folder=cache_dir, device=torch_device)
            search = SearchArea(use_gps=not no_gps, radius_m=search_radius)
            start = time.perf_counter()
            with progress_bar(quiet or not context.is_main) as progress:
                share = len(range(context.rank, len(queries), context.world_size))
                task = progress.add_task("batch", total=share, info="") if progress else None

                def advance(query, record) -> None:
                    if progress:
                        done = progress.tasks[0].completed + 1
                        rate = done / max(time.perf_counter() - start, 1e-9)
                        progress.update(task, completed=done, info=f"{rate:.2f} queries/s")

                stats = run_batch(
                    queries,
                    ref,
                    detectors,
                    out,
                    cache=cache,
                    rank=context.rank if context.enabled else None,
                    world_size=context.world_size,
                    retry_failed=retry_failed,
                    on_query=advance,
                    bands=band_list,
                    gsd_m=gsd,
                    batch_size=batch_size,
                    top_k=top_k,
                    search=search,
                    max_tiles=max_tiles,
                    verify=verify,
                )
            barrier(context)
            failed = write_output(queries, out) if context.is_main else []
            stats = _summed(stats, context, time.perf_counter() - start)
    finally:
        shutdown(context)
    if not context.is_main:
        return
    if json_output:
        typer.echo(json.dumps({**stats.as_dict(), "failed_total": len(failed), "output": str(out)}))
    elif not quiet:
        stderr_console.print(_summary_table(stats))
    # Said even with -q, which hides progress, not what became of the queries.
    if stats.changed:
        typer.echo(f"{stats.changed} queries changed since the journal was written: located again", err=True)
    if failed:
        share = "all" if len(failed) == len(queries) else f"{len(failed)} of"
        typer.echo(f"{share} {len(queries)} queries failed: see {errors_path(out)}", err=True)
        raise typer.Exit(SOME_FAILED_EXIT)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch_command)
