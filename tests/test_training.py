"""Training end to end: smgeo-nano overfits generated pairs, uses the click, evaluates, resumes, runs under torchrun.

One model is trained per session (a few CPU minutes) and shared by the tests
that need a trained model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_config
from smgeo_cli.commands import train_cmd
from smgeo_cli.data.cvogl import QUERY_DIR, CVOGLDataset, load_records
from smgeo_cli.data.toy import write_toy_dataset
from smgeo_cli.evaluate import evaluate, predict_boxes
from smgeo_cli.metrics import cvogl_iou
from smgeo_cli.model.config import SMGeoConfig, resolve_config
from smgeo_cli.model.smgeo import SMGeo
from smgeo_cli.model.weights import load_model
from smgeo_cli.train.loop import TrainOptions, initial_weights, train

pytestmark = pytest.mark.slow

# Files are written at twice the model's input size, so evaluation must map
# boxes back to the satellite files' own pixels.
FILE_QUERY, FILE_REF = 256, 512
OVERFIT_STEPS = 120


def run_smgeo(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smgeo_cli", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    write_toy_dataset(root, n_scenes=8, splits=["train"], query_size=FILE_QUERY, ref_size=FILE_REF, seed=3)
    return root


@pytest.fixture(scope="session")
def overfit_run(toy_root, tmp_path_factory):
    """smgeo-nano (reference input 256 to fit CI's CPU budget) trained on 16 pairs: 8 scenes x 2 clicks."""
    config = resolve_config("smgeo-nano").replace(ref_size=256)
    out = tmp_path_factory.mktemp("overfit")
    torch.manual_seed(0)
    reports = train(
        config,
        [toy_root],
        out,
        TrainOptions(epochs=1000, max_steps=OVERFIT_STEPS, batch_size=8, lr=1e-3, min_lr=1e-4, augment=False, num_workers=0),
    )
    curve = [(r.step, round(r.train["loss"], 3)) for r in reports]
    print("overfit curve (step, loss):", curve)
    return out


def test_nano_overfits_sixteen_generated_pairs(overfit_run, toy_root):
    model = load_model(overfit_run / "last")
    dataset = CVOGLDataset(toy_root, "train", model.config.query_size, model.config.ref_size)
    metrics = evaluate(dataset.records, predict_boxes(model, dataset)).metrics
    print("overfit metrics:", metrics)
    assert metrics["n"] == 16
    assert metrics["acc@0.5"] >= 0.9


def _scene_hits(model, dataset, click_of) -> list[bool]:
    """Per scene: both pairs' top boxes hit their own object (IoU > 0.5) when clicked as ``click_of`` says."""
    hits = []
    for first in range(0, len(dataset), 2):
        pair = [dataset[first], dataset[first + 1]]
        assert torch.equal(pair[0]["ref"], pair[1]["ref"]) and torch.equal(pair[0]["query"], pair[1]["query"])
        ok = True
        for item in pair:
            click = click_of(pair, item)
            boxes, _ = model.detect(item["query"][None], click[None], reference=item["ref"][None])
            iou = cvogl_iou(boxes[0].numpy().astype(np.float64), item["box"][None].numpy(), np.array([[256.0, 256.0]]))
            ok &= bool(iou[0] > 0.5)
        hits.append(ok)
    return hits


def test_moving_the_click_moves_the_box_to_the_other_object(overfit_run, toy_root):
    model = load_model(overfit_run / "last")
    dataset = CVOGLDataset(toy_root, "train", model.config.query_size, model.config.ref_size)
    with_click = _scene_hits(model, dataset, lambda pair, item: item["click"])
    assert sum(with_click) >= 7, with_click  # of 8 scenes, both objects found by moving the click
    # The same check on a click-blind model (always the first object's click) must fail:
    # it can find at most one object per scene.
    click_blind = _scene_hits(model, dataset, lambda pair, item: pair[0]["click"])
    assert sum(click_blind) == 0


def test_eval_command_reports_cvogl_metrics_and_predictions_in_file_pixels(overfit_run, toy_root, tmp_path):
    predictions_path = tmp_path / "pred.jsonl"
    result = run_smgeo(
        "eval", str(toy_root), "--split", "train", "--weights", str(overfit_run / "last"),
        "--json", "--predictions-out", str(predictions_path),
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert set(metrics) == {"n", "acc@0.25", "acc@0.5", "mIoU", "per_category"}
    assert metrics["n"] == 16 and sum(c["n"] for c in metrics["per_category"].values()) == 16

    predictions = [json.loads(line) for line in predictions_path.read_text().splitlines()]
    records = {r.id: r for r in load_records(toy_root, "train")}
    assert len(predictions) == 16
    for p in predictions:
        recomputed = cvogl_iou(np.array([p["box"]]), np.array([records[p["id"]].box_xyxy]), np.array([[FILE_REF, FILE_REF]]))
        assert abs(recomputed[0] - p["iou"]) < 1e-3  # the box is in the 512-pixel file, not the 256 model input
    assert abs(np.mean([p["iou"] for p in predictions]) - metrics["mIoU"]) < 1e-3

    table = run_smgeo("eval", str(toy_root), "--split", "train", "--weights", str(overfit_run / "last"), "-q")
    assert table.returncode == 0 and "acc@0.5" in table.stdout


@pytest.fixture
def tiny_config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    tiny_config(query_size=64, ref_size=128).save(path)
    return path


def test_resume_continues_the_run_from_its_last_checkpoint(toy_root, tiny_config_file, tmp_path):
    out = tmp_path / "run"
    common = ["train", str(toy_root), "--config", str(tiny_config_file), "--out", str(out), "--batch-size", "8", "--workers", "0", "-q"]
    first = run_smgeo(*common, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    again = run_smgeo(*common, "--epochs", "2")
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    resumed = run_smgeo(*common, "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    assert [h["step"] for h in history] == [2, 4]
    assert (out / "best" / "model.safetensors").exists()


def test_torchrun_two_processes_on_cpu_train_a_checkpoint_that_evaluates(toy_root, tiny_config_file, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
            "-m", "smgeo_cli", "train", str(toy_root), "--config", str(tiny_config_file), "--out", str(out),
            "--max-steps", "3", "--batch-size", "2", "--workers", "0", "-q",
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 3  # steps are global: each saw 2 ranks x 2 samples
    evaluated = run_smgeo("eval", str(toy_root), "--split", "train", "--weights", str(out / "last"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n"] == 16


def test_train_and_eval_errors_are_one_line_with_exit_codes(tmp_path, tiny_config_file):
    missing = run_smgeo("train", str(tmp_path / "nowhere"), "--config", str(tiny_config_file), "--out", str(tmp_path / "o"))
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    bad_config = run_smgeo("train", str(tmp_path), "--config", "smgeo-huge", "--out", str(tmp_path / "o"))
    assert bad_config.returncode == 2 and "smgeo-nano" in bad_config.stderr
    no_weights = run_smgeo("eval", str(tmp_path), "--weights", str(tmp_path / "none"))
    assert no_weights.returncode == 5 and "weights" in no_weights.stderr


def test_eval_with_the_matcher_needs_no_weights_and_reports_the_same_metrics(toy_root):
    result = run_smgeo("eval", str(toy_root), "--split", "train", "--method", "match", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 16 and set(metrics) == {"n", "acc@0.25", "acc@0.5", "mIoU", "per_category"}
    # Toy drone views are mild homographies of the tile: matching finds most objects.
    assert metrics["acc@0.25"] >= 0.5


def test_eval_auto_takes_the_matchers_fit_and_the_models_box_where_matching_finds_none(overfit_run, toy_root, tmp_path):
    # Flat grey queries give SIFT nothing to match: there the model must answer.
    root = tmp_path / "toy"
    shutil.copytree(toy_root, root)
    for record in load_records(root, "train")[:4]:
        cv2.imwrite(str(root / QUERY_DIR / record.query_name), np.full((FILE_QUERY, FILE_QUERY, 3), 128, np.uint8))
    rows = {}
    for method in ("match", "smgeo", "auto"):
        out = tmp_path / f"{method}.jsonl"
        args = ["eval", str(root), "--split", "train", "--method", method, "--predictions-out", str(out), "--json"]
        result = run_smgeo(*args, "--weights", str(overfit_run / "last"))
        assert result.returncode == 0, result.stderr
        rows[method] = [json.loads(line) for line in out.read_text().splitlines()]
    matched = [m["box"][2] > m["box"][0] for m in rows["match"]]
    assert 0 < sum(matched) < len(matched)  # both sources are exercised
    for found, match, model, auto in zip(matched, rows["match"], rows["smgeo"], rows["auto"]):
        assert auto["box"] == (match if found else model)["box"]


def test_init_weights_start_a_run_at_another_reference_size(toy_root, tiny_config_file, tmp_path):
    small = tmp_path / "small"
    common = ["--batch-size", "8", "--workers", "0", "-q"]
    first = run_smgeo("train", str(toy_root), "--config", str(tiny_config_file), "--out", str(small), "--epochs", "1", *common)
    assert first.returncode == 0, first.stderr

    # The model a fine-tuning run starts from holds exactly the given weights, at the new input size.
    config = SMGeoConfig.load(tiny_config_file).replace(ref_size=256)
    model = SMGeo(config)
    initial_weights(model, TrainOptions(init_weights=small / "last"))
    start, given = model.state_dict(), load_model(small / "last").state_dict()
    assert start.keys() == given.keys() and all(torch.equal(start[k], given[k]) for k in start)

    big = tmp_path / "big"
    tuned = run_smgeo(
        "train", str(toy_root), "--config", str(tiny_config_file), "--ref-size", "256",
        "--init-weights", str(small / "last"), "--out", str(big), "--max-steps", "1", *common,
    )
    assert tuned.returncode == 0, tuned.stderr
    assert SMGeoConfig.load(big / "last" / "config.json").ref_size == 256

    other_widths = run_smgeo(
        "train", str(toy_root), "--config", "smgeo-nano", "--init-weights", str(small / "last"), "--out", str(tmp_path / "x")
    )
    assert other_widths.returncode == 5 and "do not fit" in other_widths.stderr


def test_several_roots_train_together_and_validate_pooled(toy_root, tiny_config_file, tmp_path):
    other = tmp_path / "other"
    write_toy_dataset(other, n_scenes=4, splits=["train", "val"], query_size=FILE_QUERY, ref_size=FILE_REF, seed=5)
    out = tmp_path / "run"
    result = run_smgeo(
        "train", str(toy_root), str(other), "--config", str(tiny_config_file), "--out", str(out),
        "--epochs", "1", "--batch-size", "4", "--workers", "0", "-q",
    )
    assert result.returncode == 0, result.stderr
    (report,) = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    train_pairs = len(load_records(toy_root, "train")) + len(load_records(other, "train"))
    assert report["step"] == train_pairs // 4
    assert report["val"]["n"] == len(load_records(other, "val"))


def test_without_a_terminal_training_logs_plain_step_lines(toy_root, tiny_config_file, tmp_path, monkeypatch, capsys):
    # Under nohup or into a log file there is no progress bar; step lines must still show that it runs.
    monkeypatch.setattr(train_cmd, "LOG_EVERY_S", 0.0)
    code, _, stderr = run_cli(
        monkeypatch, capsys, "train", toy_root, "--config", tiny_config_file, "--out", tmp_path / "run",
        "--epochs", "1", "--batch-size", "8", "--workers", "0",
    )  # fmt: skip
    assert code == 0
    steps = [line.split() for line in stderr.splitlines() if line.startswith("epoch 1  step ") and "  lr " in line]
    assert [words[3] for words in steps] == ["1/2", "2/2"]
    assert {"loss", "samples/s", "lr"} <= set(steps[0])


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_training_resumes_from_its_last_complete_checkpoint(toy_root, tiny_config_file, tmp_path, how):
    out = tmp_path / "run"
    common = ["train", str(toy_root), "--config", str(tiny_config_file), "--out", str(out), "--batch-size", "8",
              "--workers", "0", "-q"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "smgeo_cli", *common, "--epochs", "1000"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if (out / "history.jsonl").is_file() and len(_history(out)) >= 2:
            break
        time.sleep(0.01)
    process.send_signal(how)
    _, err = process.communicate(timeout=120)
    if how == signal.SIGINT:
        assert process.returncode == 130 and err.strip() == "smgeo: interrupted", err
    # Whenever it died, last/ holds one checkpoint whole: weights, config and state of the same step.
    done = len(_history(out))
    assert 2 <= done < 1000
    resumed = run_smgeo(*common, "--epochs", str(done + 2), "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    history = _history(out)
    epochs = [h["epoch"] for h in history]
    assert epochs[-1] == done + 1 and epochs == sorted(set(epochs))  # trained on, no epoch twice
    steps = [h["step"] for h in history]
    assert steps == [2 * (epoch + 1) for epoch in epochs]  # each epoch's two steps, counted on from the checkpoint
    assert sorted(p.name for p in out.iterdir()) == ["best", "history.jsonl", "last"]


def test_a_crash_while_a_checkpoint_is_written_leaves_the_previous_one_whole(toy_root, tmp_path, monkeypatch):
    from smgeo_cli.train import loop

    out = tmp_path / "run"
    kept = {}

    def remember(report):
        kept[report.epoch] = {p.name: p.read_bytes() for p in (out / "last").iterdir()}

    saves = []

    def save_then_die(folder, *args):
        saves.append(folder)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed between the weights and the training state of epoch 1
        return real_save(folder, *args)

    real_save = loop._save_train_state
    monkeypatch.setattr(loop, "_save_train_state", save_then_die)
    options = TrainOptions(epochs=3, batch_size=8, num_workers=0, augment=False)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(query_size=64, ref_size=128), [toy_root], out, options, on_epoch=remember)
    assert {p.name: p.read_bytes() for p in (out / "last").iterdir()} == kept[0]
    assert sorted(p.name for p in out.iterdir()) == ["best", "history.jsonl", "last"]
    monkeypatch.setattr(loop, "_save_train_state", real_save)
    reports = train(tiny_config(), [toy_root], out, TrainOptions(**{**options.__dict__, "resume": True}))
    assert [r.epoch for r in reports] == [1, 2] and reports[0].step == 4


def test_a_damaged_training_state_is_refused_in_one_line(toy_root, tiny_config_file, tmp_path):
    out = tmp_path / "run"
    common = ["train", str(toy_root), "--config", str(tiny_config_file), "--out", str(out), "--workers", "0", "-q"]
    assert run_smgeo(*common, "--epochs", "1").returncode == 0
    state = out / "last" / "train_state.pt"
    state.write_bytes(state.read_bytes()[:200])
    resumed = run_smgeo(*common, "--epochs", "2", "--resume")
    assert resumed.returncode == 5 and "Traceback" not in resumed.stderr
    (line,) = resumed.stderr.strip().splitlines()
    assert "train_state.pt: damaged training state" in line and "--init-weights" in line


def test_a_second_training_run_into_the_same_folder_is_refused(toy_root, tiny_config_file, tmp_path):
    from smgeo_cli.io import output_lock

    out = tmp_path / "run"
    out.mkdir()
    with output_lock(out / "train"):
        result = run_smgeo("train", str(toy_root), "--config", str(tiny_config_file), "--out", str(out), "-q")
    assert result.returncode == 2 and "being written by another smgeo run" in result.stderr


def test_a_run_distilled_from_the_teacher_writes_the_models_weights_alone_and_resumes(toy_root, tiny_config_file, tmp_path):
    out = tmp_path / "run"
    common = ["train", str(toy_root), "--config", str(tiny_config_file), "--out", str(out), "--batch-size", "8",
              "--workers", "0", "-q", "--teacher", "distil"]
    first = run_smgeo(*common, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    # The teacher is never needed to use the weights: they hold what a run without one writes.
    written = load_model(out / "last").state_dict().keys()
    assert written == SMGeo(SMGeoConfig.load(tiny_config_file)).state_dict().keys()
    history = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert 0 < history["train"]["distil"] < 2  # a cosine distance

    resumed = run_smgeo(*common, "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    state = torch.load(out / "last" / "train_state.pt", weights_only=True)
    assert set(state["teacher"]) == {"projection.weight", "projection.bias"}
    for other in ("match", "none"):
        wrong = run_smgeo(*common[:-1], other, "--epochs", "3", "--resume")
        assert wrong.returncode != 0 and "Traceback" not in wrong.stderr, wrong.stderr
        assert f"--teacher {other}" in wrong.stderr
