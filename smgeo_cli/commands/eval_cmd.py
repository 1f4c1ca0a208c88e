"""``smgeo eval``: CVOGL metrics of a trained model on one split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from smgeo_cli.commands.options import (
    BatchSizeOption,
    DataRootArgument,
    DeviceOption,
    EvalMethodOption,
    FeaturesOption,
    HeadingsOption,
    JsonOption,
    LimitOption,
    MatchFeatures,
    Method,
    QuietOption,
    WeightsOption,
)
from smgeo_cli.commands.progress import progress_bar
from smgeo_cli.io import check_writable, write_text_atomic

if TYPE_CHECKING:
    from rich.table import Table


def eval_command(
    data_root: Path = DataRootArgument,
    split: str = typer.Option("test", "--split", help="Which <Name>_<split>.pth to evaluate."),
    method: Method = EvalMethodOption,
    features: MatchFeatures = FeaturesOption,
    headings: int = HeadingsOption,
    weights: Path = WeightsOption,
    json_output: bool = JsonOption,
    predictions_out: Path = typer.Option(
        None, "--predictions-out", help="Write one JSON line a sample: id, box (satellite pixels), score, iou."
    ),
    batch_size: int = BatchSizeOption,
    limit: int = LimitOption,
    device: str = DeviceOption,
    quiet: bool = QuietOption,
) -> None:
    """Evaluate like the CVOGL reference: top box per sample, acc@0.25, acc@0.5, mIoU, per category."""
    if predictions_out:
        check_writable(predictions_out)

    from smgeo_cli.data.cvogl import CVOGLDataset, load_records
    from smgeo_cli.device import resolve_device
    from smgeo_cli.evaluate import evaluate, first_found, match_boxes, predict_boxes
    from smgeo_cli.model.weights import load_model, weights_folder

    if method.uses_model:
        model = load_model(weights_folder(weights), resolve_device(device))
        config = model.config
        dataset = CVOGLDataset(data_root, split, config.query_size, config.ref_size, limit=limit)
        records = dataset.records
    else:
        # The matcher reads the images as stored: no resizing dataset needed.
        records = load_records(data_root, split)[:limit]
    if method is Method.match:
        name = f"match ({features.value})"
    else:
        name = config.name if method is Method.smgeo else f"auto (match with {features.value}, else {config.name})"
    with progress_bar(quiet) as progress:
        total = len(records) * (method.uses_model + method.uses_matcher)
        task = progress.add_task(f"eval {split}", total=total, info="") if progress else None
        on_progress = (lambda n: progress.advance(task, n)) if progress else None
        # Matcher first: under auto its fits answer and the model fills the samples it found nothing for.
        parts = []
        if method.uses_matcher:
            matcher_device = str(resolve_device(device))
            found = match_boxes(
                data_root, records, features.value, on_progress=on_progress, device=matcher_device, headings=headings
            )
            parts.append(found)
        if method.uses_model:
            parts.append(predict_boxes(model, dataset, batch_size=batch_size, on_progress=on_progress))
        predictions = first_found(*parts)
    result = evaluate(records, predictions)
    # Metrics first: a predictions file that fails to write must not take them with it.
    if json_output:
        typer.echo(json.dumps(result.metrics))
    else:
        Console().print(metrics_table(result.metrics, f"{name} on {data_root.name} {split}"))
    if predictions_out:
        write_text_atomic(predictions_out, "".join(json.dumps(p) + "\n" for p in result.predictions))


def metrics_table(metrics: dict, title: str) -> Table:
    """Overall and per-category rows, in percent as CVOGL papers report them."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("category", "n", "acc@0.25", "acc@0.5", "mIoU"):
        table.add_column(column, justify="left" if column == "category" else "right")

    def row(name: str, m: dict, style: str | None = None) -> None:
        table.add_row(name, str(m["n"]), *(f"{100 * m[k]:.2f}" for k in ("acc@0.25", "acc@0.5", "mIoU")), style=style)

    for category, values in sorted(metrics["per_category"].items()):
        row(category, values)
    row("all", metrics, style="bold")
    return table


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
