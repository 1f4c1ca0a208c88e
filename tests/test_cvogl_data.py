"""CVOGL-format dataset: loading, scaling to model sizes, augmentation, and bad input."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smgeo_cli.data.cvogl import CVOGLDataset, CVOGLRecord, find_annotation, load_records, write_records
from smgeo_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD, augment_reference, image_to_tensor, turn_with_points
from smgeo_cli.errors import InputFileError
from smgeo_cli.images import read_rgb

RED = (220, 30, 30)
SAT = "500000.00_4000000.00_60.00_32633.png"
BOX = (30.5, 20.0, 70.0, 50.0)  # x1, y1, x2, y2 of the red rectangle in the 120 x 80 tile
CLICK = (40.0, 12.0)  # x, y in the 64 x 48 query


def _grey_with_red_box(rng, width, height, box):
    """Noisy mid-grey image with a red rectangle covering exactly the whole pixels of box."""
    image = np.clip(rng.normal(128, 6, size=(height, width, 3)), 0, 255).astype(np.uint8)
    x1, y1, x2, y2 = box
    image[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = RED
    return image


def _red(image):
    """Per-pixel: is it red rather than grey (survives colour jitter)."""
    image = image.astype(int)
    return image[..., 0] - image[..., 1:].max(axis=-1) > 50


def _write_dataset(root: Path, n=2):
    rng = np.random.default_rng(0)
    (root / "query").mkdir(parents=True)
    (root / "satellite").mkdir()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "query" / "q.png")
    Image.fromarray(_grey_with_red_box(rng, 120, 80, BOX)).save(root / "satellite" / SAT)
    records = [CVOGLRecord(i, "q.png", SAT, CLICK, BOX, "building") for i in range(n)]
    write_records(root, "Tiny", "train", records)
    return records


def _to_uint8(tensor):
    """Undo image_to_tensor: (3, H, W) normalised -> (H, W, 3) uint8."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (tensor * std + mean).mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def test_records_round_trip_through_the_annotation_file(tmp_path):
    records = _write_dataset(tmp_path)
    assert find_annotation(tmp_path, "train") == tmp_path / "Tiny_train.pth"
    assert load_records(tmp_path, "train") == records
    entry = torch.load(tmp_path / "Tiny_train.pth", weights_only=True)[0]
    assert len(entry) == 8 and list(entry[5]) == list(BOX)


def test_items_are_scaled_to_the_model_sizes(tmp_path):
    _write_dataset(tmp_path)
    item = CVOGLDataset(tmp_path, "train", query_size=32, ref_size=60)[1]

    assert item["query"].shape == (3, 32, 32) and item["query"].dtype == torch.float32
    assert item["ref"].shape == (3, 60, 60) and item["ref"].dtype == torch.float32
    assert item["click"].tolist() == pytest.approx([40 * 32 / 64, 12 * 32 / 48])
    assert item["box"].tolist() == pytest.approx([30.5 * 60 / 120, 20 * 60 / 80, 70 * 60 / 120, 50 * 60 / 80])
    assert item["ref_scale"].tolist() == pytest.approx([120 / 60, 80 / 60])
    assert item["box"].numpy() * np.tile(item["ref_scale"].numpy(), 2) == pytest.approx(BOX)
    assert item["index"] == 1


def test_image_to_tensor_normalises_with_imagenet_statistics():
    tensor = image_to_tensor(np.full((2, 3, 3), (255, 0, 128), dtype=np.uint8))
    assert tensor.shape == (3, 2, 3)
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD)]
    assert tensor[:, 1, 2].tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("width,height", [(96, 96), (120, 80)])
def test_augmented_box_and_point_map_stay_on_the_object(width, height):
    rng = np.random.default_rng(1)
    image = _grey_with_red_box(rng, width, height, BOX)
    # A dark 2x2 mark off the box: the returned map must carry its centre to where it went.
    image[60:62, 10:12] = 0
    boxes, greys = set(), 0
    for _ in range(40):
        out, box, matrix = augment_reference(image, np.array(BOX), rng)
        assert out.shape == image.shape and out.dtype == np.uint8
        mark = matrix @ np.array([11.0, 61.0, 1.0])
        col, row = np.floor(mark[:2] / mark[2]).astype(int)
        if 0 <= col < width and 0 <= row < height:  # a crop may cut it off
            assert out[row, col].max() < 60  # the mark is under the mapped point
        if (out[..., 0] == out[..., 1]).all():
            greys += 1  # a grey reference: no red to look for
            continue
        red = _red(out)
        # Inside the box (less a blur margin) everything is red; around it nothing is.
        x1, y1, x2, y2 = np.round(box).astype(int)
        assert red[y1 + 3 : y2 - 3, x1 + 3 : x2 - 3].mean() > 0.98
        ring = np.zeros_like(red)
        ring[max(0, y1 - 6) : y2 + 6, max(0, x1 - 6) : x2 + 6] = True
        ring[max(0, y1 - 3) : y2 + 3, max(0, x1 - 3) : x2 + 3] = False
        assert red[ring].mean() < 0.02
        boxes.add(tuple(np.round(box, 1)))
    assert len(boxes) > 10  # flips, turns and crops really happened
    assert 0 < greys < 20


@pytest.mark.parametrize("turn, max_side", [(90.0, None), (217.0, None), (90.0, 200), (217.0, 200)])
def test_turning_a_photo_keeps_the_click_on_its_spot_and_leaves_no_empty_corners(turn, max_side):
    # A 4:3 photo with one red square: after the turn (and the shrink to max_side) the mapped click lands on it.
    photo = np.full((300, 400, 3), 90, np.uint8)
    photo[:150, :, 1] = 180  # the top half green, so a wrong turn direction shows
    photo[40:60, 300:320] = (255, 0, 0)
    turned, click = turn_with_points(photo, turn, np.array([310.0, 50.0]), max_side=max_side)
    side = max_side or 400
    assert turned.shape == (side, side, 3)
    x, y = np.rint(click).astype(int)
    assert tuple(turned[y, x]) == (255, 0, 0)
    # Clockwise: a quarter turn takes the photo's top to the right; corners are mirrored photo, not black.
    if turn == 90.0:
        assert turned[side // 2, side - side // 20, 1] == 180 and turned[side // 2, side // 20, 1] == 90
    assert turned.reshape(-1, 3).max(axis=1).min() > 0


def test_training_items_are_augmented_reproducibly_per_epoch(tmp_path):
    _write_dataset(tmp_path)
    dataset = CVOGLDataset(tmp_path, "train", query_size=32, ref_size=60, augment=True, seed=3)
    first = dataset[0]
    again = dataset[0]
    dataset.set_epoch(1)
    later = dataset[0]
    assert torch.equal(first["ref"], again["ref"]) and torch.equal(first["box"], again["box"])
    assert not torch.equal(first["ref"], later["ref"])
    for item in (first, later):
        x1, y1, x2, y2 = item["box"].round().int().tolist()
        assert _red(_to_uint8(item["ref"]))[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].mean() > 0.95
        assert item["click"].tolist() == pytest.approx([20, 8])  # queries get no geometry


def test_limit_keeps_the_first_records(tmp_path):
    records = _write_dataset(tmp_path, n=5)
    assert CVOGLDataset(tmp_path, "train", 32, 60, limit=2).records == records[:2]


@pytest.mark.parametrize(
    "entries,message",
    [
        ([("a",) * 8, (1, "q.png")], "entry 0"),
        (
            [
                (0, "q.png", "s.png", [1, 2], [1, 2], [0, 0, 5, 5], [], "c"),
                (1, "q.png", "s.png", [1, 2], [1, 2], [0, "x", 5, 5], [], "c"),
            ],
            "entry 1: bbox",
        ),
        ([(0, "q.png", "s.png", [1, 2], [1], [0, 0, 5, 5], [], "c")], "entry 0: click_xy"),
        ([(0, "q.png", "s.png", [1, 2], [1, 2], [5, 0, 5, 5], [], "c")], "entry 0: bbox"),
        ([(0, "q.png", "s.png", [1, 2], [1, 2], [0, 0, 5, 5], [], None)], "entry 0: category"),
        ({"not": "a list"}, "expected a list"),
        ([], "no samples"),
        ([(0, Path("q.png"))], "not a readable CVOGL annotation file"),  # never unpickled
    ],
)
def test_malformed_annotations_name_file_and_entry(tmp_path, entries, message):
    torch.save(entries, tmp_path / "Bad_train.pth")
    with pytest.raises(InputFileError, match=message) as info:
        load_records(tmp_path, "train")
    assert "Bad_train.pth" in str(info.value)


def test_garbage_annotation_file(tmp_path):
    (tmp_path / "Bad_test.pth").write_bytes(b"not a torch file")
    with pytest.raises(InputFileError, match="Bad_test.pth"):
        load_records(tmp_path, "test")


def test_missing_or_ambiguous_annotation_file(tmp_path):
    with pytest.raises(InputFileError, match=r"\*_val\.pth"):
        find_annotation(tmp_path, "val")
    with pytest.raises(InputFileError, match="not found"):
        find_annotation(tmp_path / "nowhere", "val")
    (tmp_path / "A_val.pth").touch()
    (tmp_path / "B_val.pth").touch()
    with pytest.raises(InputFileError, match="A_val.pth, B_val.pth"):
        find_annotation(tmp_path, "val")


def test_missing_image_is_named(tmp_path):
    _write_dataset(tmp_path)
    (tmp_path / "satellite" / SAT).unlink()
    with pytest.raises(InputFileError, match=re.escape(f"satellite/{SAT}: image not found") + ".*entry 0"):
        load_records(tmp_path, "train")


def test_read_rgb_applies_exif_orientation_and_reports_bad_files(tmp_path):
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[0, -1] = 255  # top-right pixel as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be turned 90 degrees clockwise for display
    Image.fromarray(pixels).save(tmp_path / "photo.png", exif=exif)
    shown = read_rgb(tmp_path / "photo.png")
    assert shown.shape == (30, 20, 3) and shown.dtype == np.uint8
    assert shown[-1, -1].tolist() == [255, 255, 255]  # stored top-right ends bottom-right

    with pytest.raises(InputFileError, match="missing.jpg"):
        read_rgb(tmp_path / "missing.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(InputFileError, match="broken.jpg"):
        read_rgb(tmp_path / "broken.jpg")


def test_samples_off_their_images_are_left_out_with_a_warning_naming_them(tmp_path):
    """A box wholly off the satellite tile or a click off the photo can only be missed, or trained towards nothing."""
    from smgeo_cli.errors import SmgeoWarning

    good = _write_dataset(tmp_path)
    bad = [
        CVOGLRecord("box-off", "q.png", SAT, CLICK, (130.0, 10.0, 150.0, 30.0), "building"),  # the tile is 120 wide
        CVOGLRecord("click-off", "q.png", SAT, (64.0, 10.0), BOX, "building"),  # the photo is 64 wide
    ]
    write_records(tmp_path, "Tiny", "train", [*good, *bad])
    with pytest.warns(SmgeoWarning, match=r"2 of 4 samples .* \(ids box-off, click-off\)"):
        assert load_records(tmp_path, "train") == good
    write_records(tmp_path, "Tiny", "train", bad)
    with pytest.raises(InputFileError, match="2 of 2 samples"):
        load_records(tmp_path, "train")
