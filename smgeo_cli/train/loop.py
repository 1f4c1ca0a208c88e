"""The training loop: single process, or one rank of a torchrun/DDP job.

Output folder layout (every epoch):

    OUT/last/   config.json, model.safetensors, train_state.pt   (for --resume)
    OUT/best/   config.json, model.safetensors                   (best val acc@0.5)
    OUT/history.jsonl                                            (one line an epoch)

Each checkpoint folder is written beside its place and swapped in whole
(:func:`smgeo_cli.io.replace_folder`), so the weights and the training state
of ``last/`` always come from the same step, whenever the run is killed.
``train_state.pt`` holds only tensors, numbers and dicts (optimizer state,
step, epoch, best score) and is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, RandomSampler

from smgeo_cli.data.cvogl import CVOGLDataset, find_annotation
from smgeo_cli.defaults import TEACHER_ROUTES
from smgeo_cli.device import resolve_device, set_cpu_threads
from smgeo_cli.errors import InputFileError, UsageError, WeightsError
from smgeo_cli.evaluate import evaluate_model
from smgeo_cli.io import output_lock, recover_folder, replace_atomically, replace_folder
from smgeo_cli.model.config import SMGeoConfig
from smgeo_cli.model.encoder import read_backbone_weights
from smgeo_cli.model.smgeo import SMGeo
from smgeo_cli.model.weights import WEIGHTS_FILE, load_model, load_weights_into, save_weights
from smgeo_cli.train import distributed as dist_utils
from smgeo_cli.train.losses import smgeo_loss
from smgeo_cli.train.targets import center_targets
from smgeo_cli.train.teacher import Teacher

TRAIN_STATE_FILE = "train_state.pt"
# timm names of ImageNet Swins, by (embed_dim, depths).
TIMM_SWIN_NAMES = {
    (96, (2, 2, 6, 2)): "swin_tiny_patch4_window7_224",
    (96, (2, 2, 18, 2)): "swin_small_patch4_window7_224",
    (128, (2, 2, 18, 2)): "swin_base_patch4_window7_224",
}


@dataclass
class TrainOptions:
    """Optimiser and run settings (the paper's: AdamW 1e-4, wd 1e-4, 2 warm-up epochs, cosine to 1e-5, clip 1.0).

    Checked when made: UsageError names the first value out of range (NaN and infinities included).
    """

    epochs: int = 25
    batch_size: int = 8
    lr: float = 1e-4
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    grad_clip: float = 1.0
    max_steps: int | None = None
    limit: int | None = None
    num_workers: int = 2
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    resume: bool = False
    augment: bool = True
    pretrained_backbone: bool = False
    backbone_weights: Path | None = None
    init_weights: Path | None = None
    teacher: str = "none"
    teacher_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.teacher not in TEACHER_ROUTES:
            raise UsageError(f"training option teacher = {self.teacher!r}: choose one of {', '.join(TEACHER_ROUTES)}")
        rules = {
            "lr": lambda v: v > 0,
            "min_lr": lambda v: 0 <= v <= self.lr,
            "weight_decay": lambda v: v >= 0,
            "warmup_epochs": lambda v: v >= 0,
            "grad_clip": lambda v: v > 0,
            "teacher_weight": lambda v: v >= 0,
        }
        for name, rule in rules.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and rule(value)):
                raise UsageError(f"training option {name} = {value} is out of range")
        counts = {"epochs": 1, "batch_size": 1, "max_steps": 1, "limit": 1, "num_workers": 0}
        for name, least in counts.items():
            value = getattr(self, name)
            if value is not None and value < least:
                raise UsageError(f"training option {name} = {value} must be at least {least}")


@dataclass
class StepReport:
    """What the progress display shows after each optimiser step."""

    epoch: int
    step: int
    total_steps: int
    loss: float
    samples_per_s: float
    lr: float


@dataclass
class EpochReport:
    epoch: int
    step: int
    train: dict[str, float]
    val: dict | None
    seconds: float
    samples_per_s: float
    best: bool = False


def lr_at(step: int, total_steps: int, warmup_steps: int, options: TrainOptions) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return options.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return options.min_lr + 0.5 * (options.lr - options.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def initial_weights(model: SMGeo, options: TrainOptions) -> None:
    """Start from a whole SMGeo weights folder, or the Swin from ImageNet (timm download) or a local file."""
    config = model.config
    if options.init_weights:
        load_weights_into(model, Path(options.init_weights))
    elif options.backbone_weights:
        path = Path(options.backbone_weights)
        model.encoder.load_backbone_state(read_backbone_weights(path), str(path))
    elif options.pretrained_backbone:
        name = TIMM_SWIN_NAMES.get((config.embed_dim, tuple(config.depths)))
        if name is None:
            raise UsageError(
                f"no ImageNet Swin matches {config.name} (embed_dim {config.embed_dim}, depths {list(config.depths)}); "
                "train from scratch or pass --backbone-weights FILE"
            )
        try:
            import timm
        except ImportError:
            raise UsageError(
                "--pretrained-backbone downloads timm's ImageNet Swin and needs timm: "
                "pip install 'smgeo[imagenet]', or pass --backbone-weights FILE"
            ) from None
        try:
            pretrained = timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as exc:  # noqa: BLE001 - network and hub errors vary
            raise WeightsError(
                f"could not download {name} ImageNet weights ({type(exc).__name__}); "
                "offline, save them once elsewhere and pass --backbone-weights FILE"
            ) from None
        model.encoder.load_backbone_state(pretrained.state_dict(), f"timm {name}")


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def _has_split(root: Path, split: str) -> bool:
    try:
        find_annotation(root, split)
    except InputFileError:
        return False
    return True


def train(
    config: SMGeoConfig,
    data_roots: Sequence[Path],
    out_dir: Path,
    options: TrainOptions,
    on_step: Callable[[StepReport], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> list[EpochReport]:
    """Train SMGeo on the train splits of ``data_roots`` together, validating on their val splits pooled.

    Several roots let one run learn from, say, CVOGL and the user's own
    ``smgeo synth`` pairs. Under torchrun every rank calls this; rank 0 alone
    writes files and calls the callbacks. Returns the epoch reports (rank 0;
    empty elsewhere).
    """
    data_roots, out_dir = [Path(root) for root in data_roots], Path(out_dir)
    device = resolve_device(options.device)
    context = dist_utils.init_distributed(device.type)
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)
    if device.type == "cpu":
        set_cpu_threads(context.local_world_size)
    torch.manual_seed(options.seed + context.rank)

    try:
        if not context.is_main:
            return _train(config, data_roots, out_dir, options, device, context, on_step, on_epoch)
        _make_run_folder(out_dir)
        # One run trains into a folder at a time.
        with output_lock(out_dir / "train"):
            return _train(config, data_roots, out_dir, options, device, context, on_step, on_epoch)
    finally:
        dist_utils.shutdown(context)


def _make_run_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"--out {out_dir} is a file: give a folder for the run")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputFileError(f"cannot create the run folder {out_dir}: {err.strerror or err}") from None


def _read_train_state(folder: Path, device: torch.device) -> dict:
    """The optimizer state, step, epoch and best score of a checkpoint; WeightsError naming a damaged file."""
    path = folder / TRAIN_STATE_FILE
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"holds a {type(state).__name__}")
        restored = {key: state[key] for key in ("optimizer", "step", "epoch", "best_score")}
        # Runs without a teacher, and those saved before teachers existed, have no "teacher" entry.
        restored["teacher"] = state.get("teacher", {})
        return restored
    # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...) for a damaged file.
    except Exception as err:  # noqa: BLE001
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(
            f"{path}: damaged training state ({reason}); delete {folder} to train from the best weights "
            f"(--init-weights {folder.parent / 'best'}) or start a new run"
        ) from None


def _train(config, data_roots, out_dir, options, device, context, on_step, on_epoch) -> list[EpochReport]:
    last_dir, best_dir = out_dir / "last", out_dir / "best"
    if context.is_main:
        recover_folder(last_dir)
        recover_folder(best_dir)
    dist_utils.barrier(context)
    if options.resume:
        if not (last_dir / TRAIN_STATE_FILE).exists():
            raise UsageError(f"--resume: {last_dir} holds no checkpoint to resume from")
        model = load_model(last_dir, device).train()
        config = model.config
    else:
        if (last_dir / WEIGHTS_FILE).exists():
            raise UsageError(f"{out_dir} already holds a training run: pass --resume to continue it, or choose a new --out")
        model = SMGeo(config)
        initial_weights(model, options)
        model.to(device).train()

    train_parts = [
        CVOGLDataset(root, "train", config.query_size, config.ref_size, augment=options.augment, limit=options.limit, seed=options.seed)
        for root in data_roots
    ]
    train_set = ConcatDataset(train_parts)
    val_sets = [
        CVOGLDataset(root, "val", config.query_size, config.ref_size, limit=options.limit)
        for root in data_roots
        if _has_split(root, "val")
    ]
    if context.enabled:
        sampler = DistributedSampler(train_set, num_replicas=context.world_size, rank=context.rank, seed=options.seed)
    else:
        sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(options.seed))
    loader = DataLoader(
        train_set,
        batch_size=options.batch_size,
        sampler=sampler,
        num_workers=options.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=len(train_set) >= options.batch_size * context.world_size,
    )
    steps_per_epoch = max(1, len(loader))
    total_steps = options.epochs * steps_per_epoch
    if options.max_steps:
        total_steps = min(total_steps, options.max_steps)
    warmup_steps = max(1, min(int(options.warmup_epochs * steps_per_epoch), total_steps // 5))

    # Experts that no token chose get no gradient in a step: DDP must allow that.
    net = DistributedDataParallel(model, find_unused_parameters=True) if context.enabled else model
    teacher = Teacher(options.teacher, config).to(device) if options.teacher != "none" else None
    trained = [*model.parameters(), *(teacher.parameters() if teacher else ())]
    teacher_net = DistributedDataParallel(teacher) if teacher and context.enabled and teacher.projection is not None else teacher
    optimizer = torch.optim.AdamW(trained, lr=options.lr, weight_decay=options.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and options.amp and not torch.cuda.is_bf16_supported())

    step, start_epoch, best_score = 0, 0, float("-inf")
    if options.resume:
        state = _read_train_state(last_dir, device)
        # The teacher first: a run resumed with another --teacher fails here, naming it, not in the optimizer.
        try:
            (teacher or torch.nn.Module()).load_state_dict(state["teacher"])
        except RuntimeError:
            raise WeightsError(
                f"{last_dir / TRAIN_STATE_FILE}: this run was not trained with --teacher {options.teacher}; "
                "resume it with the teacher it started with"
            ) from None
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as err:
            raise WeightsError(f"{last_dir / TRAIN_STATE_FILE}: optimizer state does not fit the model ({err})") from None
        step, start_epoch, best_score = state["step"], state["epoch"] + 1, state["best_score"]

    reports: list[EpochReport] = []
    epoch = start_epoch
    while epoch < options.epochs and step < total_steps:
        if context.enabled:
            sampler.set_epoch(epoch)
        for part in train_parts:
            part.set_epoch(epoch)
        epoch_start = time.perf_counter()
        sums: dict[str, float] = {}
        samples = 0
        for batch in loader:
            step_start = time.perf_counter()
            lr = lr_at(step, total_steps, warmup_steps, options)
            for group in optimizer.param_groups:
                group["lr"] = lr
            query, click = batch["query"].to(device, non_blocking=True), batch["click"].to(device)
            reference, boxes = batch["ref"].to(device, non_blocking=True), batch["box"].to(device)
            with _autocast(device, options.amp):
                maps = net(query, click, reference)
            targets = center_targets(boxes, maps["heatmap"].shape[-1], config.fusion_stride)
            terms = smgeo_loss(maps, targets, config, batch["homography"].to(device), batch["box_has_extent"].to(device))
            if teacher_net is not None:
                teacher_terms = teacher_net(query, reference, maps)
                terms["loss"] = terms["loss"] + options.teacher_weight * sum(teacher_terms.values())
                terms.update(teacher_terms)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["loss"]).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trained, options.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            batch_size = len(boxes) * context.world_size
            samples += batch_size
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(boxes)
            if on_step and context.is_main:
                elapsed = time.perf_counter() - step_start
                on_step(StepReport(epoch, step, total_steps, float(terms["loss"].detach()), batch_size / elapsed, lr))
            if step >= total_steps:
                break

        seconds = time.perf_counter() - epoch_start
        local_samples = samples // context.world_size
        train_means = {
            name: float(dist_utils.all_reduce_mean(torch.tensor(total / max(1, local_samples)), context))
            for name, total in sorted(sums.items())
        }
        if context.is_main:
            report = EpochReport(epoch, step, train_means, None, seconds, samples / max(seconds, 1e-9))
            if val_sets:
                report.val = evaluate_model(model, val_sets, batch_size=options.batch_size).metrics
                score = report.val["acc@0.5"]
            else:
                score = -train_means["loss"]  # no val split: the lowest training loss is best
            with replace_folder(last_dir) as checkpoint:
                save_weights(model, checkpoint)
                _save_train_state(checkpoint, optimizer, teacher, step, epoch, max(best_score, score))
            if score > best_score:
                best_score, report.best = score, True
                with replace_folder(best_dir) as checkpoint:
                    save_weights(model, checkpoint)
            with open(out_dir / "history.jsonl", "a") as history:
                history.write(json.dumps(_report_dict(report)) + "\n")
            reports.append(report)
            if on_epoch:
                on_epoch(report)
        dist_utils.barrier(context)
        epoch += 1
    return reports


def _save_train_state(
    folder: Path, optimizer: torch.optim.Optimizer, teacher: Teacher | None, step: int, epoch: int, best_score: float
) -> None:
    state = {"optimizer": optimizer.state_dict(), "step": step, "epoch": epoch, "best_score": best_score}
    if teacher is not None:
        state["teacher"] = teacher.state_dict()
    with replace_atomically(folder / TRAIN_STATE_FILE) as tmp:
        torch.save(state, tmp)


def _report_dict(report: EpochReport) -> dict:
    return {
        "epoch": report.epoch,
        "step": report.step,
        "seconds": round(report.seconds, 2),
        "samples_per_s": round(report.samples_per_s, 3),
        "train": {k: round(v, 5) for k, v in report.train.items()},
        "val": report.val,
        "best": report.best,
    }

