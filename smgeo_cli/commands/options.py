"""Options shared by several commands, defined once (as rio does)."""

from __future__ import annotations

from enum import Enum

import typer

from smgeo_cli.device import DEVICE_CHOICES

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
    """How to find the object: the SMGeo model, or training-free SIFT + RANSAC matching."""

    smgeo = "smgeo"
    match = "match"


MethodOption = typer.Option(Method.smgeo, "--method", help="smgeo (the model) or match (SIFT + RANSAC, no training).")
VerifyOption = typer.Option(
    False, "--verify", help="Check each hit by SIFT matching: adds verified, verify_inliers, verify_distance_m."
)
