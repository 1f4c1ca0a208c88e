"""Options shared by several commands, defined once (as rio does)."""

from __future__ import annotations

from enum import Enum

import typer

from smgeo_cli.device import DEVICE_CHOICES
from smgeo_cli.matching.detector import DEFAULT_FEATURES, FEATURE_CHOICES

DeviceOption = typer.Option("auto", "--device", help=f"Where the model runs: {', '.join(DEVICE_CHOICES)}.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress display.")
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of a table.")
BatchSizeOption = typer.Option(8, "--batch-size", min=1, help="Samples per forward pass.")
LimitOption = typer.Option(None, "--limit", min=1, help="Use only the first N samples of each split (quick runs).")
WeightsOption = typer.Option(
    None, "--weights", help="Weights folder (config.json + model.safetensors). Default: the bundled model."
)
DataRootArgument = typer.Argument(..., help="Dataset root in CVOGL layout (<Name>_<split>.pth, query/, satellite/).")



class Method(str, Enum):
    """How to find the object: the SMGeo model, training-free SIFT + RANSAC matching, or the matcher then the model."""

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
