"""``smgeo locate``: the object clicked on a drone photo, as a footprint on a georeferenced raster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from smgeo_cli.commands.options import (
    DeviceOption,
    FeaturesOption,
    GsdOption,
    HeadingsOption,
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
from smgeo_cli.defaults import DEFAULT_FEATURES, DEFAULT_HEADINGS
from smgeo_cli.errors import UsageError
from smgeo_cli.geo.formats import GEOJSON_SUFFIXES, OGR_DRIVERS

if TYPE_CHECKING:
    import torch

    from smgeo_cli.locate import TileDetector


def method_detectors(
    method: Method,
    weights: Path | None,
    device: str | torch.device,
    features: str = DEFAULT_FEATURES,
    headings: int = DEFAULT_HEADINGS,
) -> list[TileDetector]:
    """The detectors ``method`` tries in turn: the matchers of ``features``, the model, or the matchers then the model.

    The learned matchers try a photo without a known heading at ``headings`` turns.

    ``device`` (a ``--device`` value or a resolved device) is checked only when a network is used.
    """
    from smgeo_cli.device import resolve_device
    from smgeo_cli.locate import SMGeoDetector
    from smgeo_cli.matching.detector import matchers
    from smgeo_cli.model.weights import load_model, weights_folder

    learned = method.uses_matcher and features != "sift"
    if isinstance(device, str) and (method.uses_model or learned):
        device = resolve_device(device)
    detectors: list[TileDetector] = []
    if method.uses_matcher:
        detectors.extend(matchers(features, device=str(device), headings=headings))
    if method.uses_model:
        detectors.append(SMGeoDetector(load_model(weights_folder(weights), device)))
    return detectors


def locate_command(
    photo: Path = typer.Argument(..., help="Drone photo, read as displayed (EXIF orientation applied)."),
    click: str = typer.Option(..., "--click", help="Clicked pixel X,Y in the photo as displayed, from its top-left."),
    ref: Path = typer.Option(..., "--ref", help="Georeferenced reference raster (GeoTIFF, COG, VRT, ...)."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output .geojson (EPSG:4326), .gpkg or .fgb (raster CRS). Default: GeoJSON on stdout."
    ),
    method: Method = MethodOption,
    features: MatchFeatures = FeaturesOption,
    headings: int = HeadingsOption,
    weights: Path = WeightsOption,
    top_k: int = typer.Option(1, "--top-k", min=1, help="How many hits to return, best first."),
    bands: str = typer.Option(None, "--bands", help="Raster bands, 1-based: red,green,blue or one grey (e.g. 4,3,2)."),
    gsd: float = GsdOption,
    tile_overlap: float = typer.Option(
        0.25, "--tile-overlap", parser=number(0.0, 1.0, high_open=True), help="Least fraction of a tile that neighbours share."
    ),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Tiles per forward pass."),
    bbox: str = typer.Option(None, "--bbox", help="Search only minx,miny,maxx,maxy (raster CRS unless --bbox-crs)."),
    bbox_crs: str = typer.Option(None, "--bbox-crs", help="CRS of --bbox, e.g. EPSG:4326."),
    search_radius: float = SearchRadiusOption,
    no_gps: bool = typer.Option(False, "--no-gps", help="Ignore the photo's GPS: search the whole raster (or --bbox)."),
    max_tiles: int = MaxTilesOption,
    verify: bool = VerifyOption,
    preview: Path = typer.Option(None, "--preview", help="Write a PNG: the photo with the click beside the top hit."),
    json_output: bool = typer.Option(
        False, "--json", help="Print a one-object JSON summary (hits, search area, timings) instead of GeoJSON."
    ),
    device: str = DeviceOption,
    quiet: bool = QuietOption,
) -> None:
    """Find the object clicked on a drone photo in a georeferenced raster; write its footprint."""
    click_xy = parse_numbers(click, (2,), "--click", "X,Y pixels, e.g. 412,230")
    band_list = parse_numbers(bands, (1, 3), "--bands", "1 or 3 band numbers, e.g. 1,2,3", kind=int) if bands else None
    box = parse_numbers(bbox, (4,), "--bbox", "minx,miny,maxx,maxy") if bbox else None
    if bbox_crs and box is None:
        raise UsageError("--bbox-crs needs --bbox")
    if out:
        check_output(out, (*GEOJSON_SUFFIXES, *OGR_DRIVERS), "-o")
    if preview:
        check_output(preview, (".png",), "--preview")

    from smgeo_cli.device import set_cpu_threads
    from smgeo_cli.geo.output import geojson_text, write_features
    from smgeo_cli.locate import SearchArea, locate_first_found
    from smgeo_cli.preview import write_preview

    set_cpu_threads()
    detectors = method_detectors(method, weights, device, features.value, headings)
    search = SearchArea(bbox=box, bbox_crs=bbox_crs, use_gps=not no_gps, radius_m=search_radius)
    with progress_bar(quiet) as progress:
        task = progress.add_task("locate", total=None, info="tiles") if progress else None
        result = locate_first_found(
            photo,
            click_xy,
            ref,
            detectors,
            bands=band_list,
            gsd_m=gsd,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
            top_k=top_k,
            search=search,
            max_tiles=max_tiles,
            verify=verify,
            on_progress=(lambda done, total: progress.update(task, completed=done, total=total)) if progress else None,
        )
    if out:
        write_features(out, result.features)
    if preview:
        write_preview(preview, result, band_list)
    if json_output:
        typer.echo(json.dumps({**result.summary(), "output": str(out) if out else None}))
    elif not out:
        typer.echo(geojson_text(result.features), nl=False)
    if not result.detections and not quiet:
        stderr_console.print("no hit: every detection fell on nodata or padding")


def register(app: typer.Typer) -> None:
    app.command("locate")(locate_command)
