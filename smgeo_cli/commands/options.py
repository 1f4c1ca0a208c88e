"""Options shared by several commands, defined once (as rio does), and the checks options get before any work."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import typer

from smgeo_cli.defaults import (
    DEFAULT_FEATURES,
    DEFAULT_HEADINGS,
    DEFAULT_MAX_TILES,
    DEFAULT_NEIGHBOURS,
    DEFAULT_SEARCH_RADIUS_M,
    DEFAULT_SYNTH_GSD_M,
    FEATURE_CHOICES,
    TEACHER_ROUTES,
)
from smgeo_cli.device import DEVICE_CHOICES
from smgeo_cli.errors import UsageError
from smgeo_cli.io import check_writable

DeviceOption = typer.Option("auto", "--device", help=f"Where the model runs: {', '.join(DEVICE_CHOICES)}.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress display.")
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of a table.")
BatchSizeOption = typer.Option(8, "--batch-size", min=1, help="Samples per forward pass.")
LimitOption = typer.Option(None, "--limit", min=1, help="Use only the first N samples of each split (quick runs).")
WeightsOption = typer.Option(
    None, "--weights", help="Weights folder (config.json + model.safetensors). Default: the bundled model."
)
DataRootArgument = typer.Argument(..., help="Dataset root in CVOGL layout (<Name>_<split>.pth, query/, satellite/).")


def number(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """A parser for a float option: a finite number in [low, high] (an open end with ``low_open``/``high_open``).

    Click's float ranges let ``nan`` and ``inf`` through; a NaN GSD or
    frame rate would make every later comparison false.
    """

    def parse(text: str | float) -> float:
        try:
            value = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise typer.BadParameter(f"{text} is not {_range_text(low, high, low_open, high_open)}")
        return value

    parse.__name__ = "float"  # the metavar help shows
    return parse


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"a finite number {'above' if low_open else 'at least'} {low:g}"
    if high is not None:
        return f"a finite number {'below' if high_open else 'at most'} {high:g}"
    return "a finite number"


def parse_numbers(text: str, counts: tuple[int, ...], option: str, example: str, kind: type = float) -> tuple:
    """The comma-separated finite ``kind`` numbers given to ``option``; UsageError unless as many as one of ``counts``."""
    try:
        values = tuple(kind(part) for part in text.split(","))
    except (ValueError, OverflowError):
        values = ()
    if len(values) not in counts or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{option} must be {example}, got {text!r}")
    return values


def check_output(path: Path, suffixes: tuple[str, ...], option: str) -> None:
    """Fail before the work, not after it, on an output that cannot be written or whose format is unknown."""
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: unknown format {path.suffix!r} (use {', '.join(suffixes)})")
    check_writable(path)


class Method(str, Enum):
    """How to find the object: the SMGeo model, training-free local-feature matching, or the matcher then the model."""

    auto = "auto"
    smgeo = "smgeo"
    match = "match"

    @property
    def uses_matcher(self) -> bool:
        return self in (Method.auto, Method.match)

    @property
    def uses_model(self) -> bool:
        return self in (Method.auto, Method.smgeo)


_METHOD_HELP = (
    "auto (the matcher's verified fit where it finds one, else the model), smgeo (the model) "
    "or match (local features + homography, no training)."
)
MethodOption = typer.Option(Method.auto, "--method", help=_METHOD_HELP)
# eval reports one method's own figures, so it names the model by default, as CVOGL results do.
EvalMethodOption = typer.Option(Method.smgeo, "--method", help=_METHOD_HELP)
VerifyOption = typer.Option(
    False, "--verify", help="Check each hit by matching: adds verified, verify_inliers, verify_distance_m."
)
# --features: the matcher's local features, one kind or kinds tried in turn.
MatchFeatures = Enum("MatchFeatures", {choice.replace("+", "_"): choice for choice in FEATURE_CHOICES}, type=str)
FeaturesOption = typer.Option(
    MatchFeatures(DEFAULT_FEATURES),
    "--features",
    help="The matcher's features: sift, xfeat (learned: XFeat + LighterGlue) or both, tried in turn until one fits.",
)
# --teacher: how training learns from XFeat.
TeacherRoute = Enum("TeacherRoute", {route: route for route in TEACHER_ROUTES}, type=str)
HeadingsOption = typer.Option(
    DEFAULT_HEADINGS,
    "--headings",
    min=1,
    max=36,
    help="Turns of the photo the learned features try when its metadata gives no heading (8: slower, a few more found).",
)
GsdOption = typer.Option(
    None, "--gsd", parser=number(0.0, low_open=True), help="Metres per model pixel. Default: the model's own."
)
SearchRadiusOption = typer.Option(
    DEFAULT_SEARCH_RADIUS_M,
    "--search-radius",
    parser=number(0.0, low_open=True),
    help="Metres around each photo's GPS ground point to search.",
)
MaxTilesOption = typer.Option(
    DEFAULT_MAX_TILES,
    "--max-tiles",
    min=1,
    help="Refuse a search that needs more tiles than this (too fine a --gsd or too large an area).",
)

# Options of the commands that write training pairs (synth, mine).
PairsOutOption = typer.Option(..., "--out", help="Folder to write the pairs to (CVOGL layout).")
PairCountOption = typer.Option(..., "--n", min=1, help="Number of pairs, all splits together.")
ValFracOption = typer.Option(
    0.1, "--val-frac", parser=number(0.0, 1.0), help="Fraction of pairs for validation (ground or photos kept apart)."
)
TestFracOption = typer.Option(
    0.1, "--test-frac", parser=number(0.0, 1.0), help="Fraction of pairs for testing (ground or photos kept apart)."
)
SeedOption = typer.Option(0, "--seed", help="Same seed and inputs, same pairs.")
QuerySizeOption = typer.Option(256, "--query-size", min=32, help="Drone view side, pixels.")
RefSizeOption = typer.Option(1024, "--ref-size", min=64, help="Reference tile side, pixels.")
TileGsdOption = typer.Option(
    None,
    "--gsd",
    parser=number(0.0, low_open=True),
    help=f"Reference tile metres per pixel of a raster (default {DEFAULT_SYNTH_GSD_M}, or the raster's if coarser).",
)
# Mining pairs from photos.
MineRefOption = typer.Option(None, "--ref", help="Georeferenced raster to match the photos against (tiles come from it).")
PhotoScaleOption = typer.Option(
    None,
    "--photo-scale",
    parser=number(0.0, low_open=True),
    help="Photo pixels per tile pixel; objects are 20-300 tile px (default 1).",
)
NeighboursOption = typer.Option(
    None,
    "--neighbours",
    min=0,
    help=f"Photos alone (no --ref): match each photo with its K nearest, by GPS, else by order (default "
    f"{DEFAULT_NEIGHBOURS}; 0: every pair).",
    metavar="K",
)
