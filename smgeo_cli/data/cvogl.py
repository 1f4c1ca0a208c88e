"""Datasets in the CVOGL layout: annotation files, query photos and satellite tiles.

Layout of a dataset root::

    <root>/<Name>_train.pth, <Name>_val.pth, <Name>_test.pth
    <root>/query/       drone photos (256 x 256 in CVOGL)
    <root>/satellite/   reference tiles (1024 x 1024 in CVOGL), named
                        EASTING_NORTHING_EXTENTM_EPSG.jpg (UTM centre, ground extent)

Each .pth holds a list of 8-tuples
``(id, query_name, sat_name, click_full, click_xy, bbox_xyxy, polygon8, category)``:
click_xy is (x, y) in query pixels, bbox_xyxy is x1, y1, x2, y2 in satellite
pixels (pixel-edge convention, see ``transforms``). Annotation files are read
with ``torch.load(weights_only=True)``: nothing but plain containers, numbers
and strings is ever unpickled.

Pairs whose geometry is known (``smgeo synth`` writes them) may carry a
sidecar ``<Name>_<split>_homographies.json``: for each query file name, the
3x3 homography from satellite-file pixels to query-file pixels, which gives
every query pixel its place in the tile (dense correspondence labels).
CVOGL itself has none; a pair without one simply gets no such labels.
"""

from __future__ import annotations

import json
import numbers
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from smgeo_cli.data.transforms import augment_query_colour, augment_reference, image_to_tensor, resize_with_points
from smgeo_cli.errors import InputFileError, SmgeoWarning, UsageError
from smgeo_cli.images import open_image, read_rgb
from smgeo_cli.io import replace_atomically, write_text_atomic

QUERY_DIR = "query"
SATELLITE_DIR = "satellite"
_LAYOUT = "CVOGL layout: <Name>_{split}.pth, query/, satellite/"
HOMOGRAPHY_SUFFIX = "_homographies.json"
# Category of a box placed at random where no object was found (``smgeo synth``
# fallback): its centre is real ground to find, but its extent outlines nothing.
CATEGORY_RANDOM = "random"
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class CVOGLRecord:
    """One annotated pair: a click on a query photo and the target's box in a satellite tile.

    click_xy is (x, y) in the query file's pixels; box_xyxy is (x1, y1, x2, y2)
    in the satellite file's pixels; category is the object class (e.g. "building").
    """

    id: int | str
    query_name: str
    sat_name: str
    click_xy: tuple[float, float]
    box_xyxy: tuple[float, float, float, float]
    category: str


def make_dataset_folders(root: str | PathLike[str]) -> Path:
    """Create ``root`` with its query/ and satellite/ folders (existing ones are kept); InputFileError if it cannot be.

    Checked before any pair is made, so a bad ``--out`` fails at once.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputFileError(f"--out {root} is a file: give a folder to write the dataset to")
    try:
        for folder in (QUERY_DIR, SATELLITE_DIR):
            (root / folder).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputFileError(f"cannot create the dataset folder {root}: {err.strerror or err}") from None
    return root


def check_split_name(split: str) -> str:
    """``split`` when it can name files (``<Name>_<split>.pth``): letters, digits, '-' and '_'; else UsageError."""
    if not _SPLIT_NAME.fullmatch(split):
        raise UsageError(f"split name {split!r} must be letters, digits, '-' or '_' (it becomes part of file names)")
    return split


def satellite_name(easting: float, northing: float, extent_m: float, epsg: int) -> str:
    """File name of a satellite tile: its UTM centre, ground extent in metres and EPSG code."""
    return f"{easting:.2f}_{northing:.2f}_{extent_m:.2f}_{epsg}.jpg"


def find_annotation(root: str | PathLike[str], split: str) -> Path:
    """The single ``<root>/*_<split>.pth`` annotation file; InputFileError if none or several."""
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"{root}: dataset folder not found ({_LAYOUT.format(split=split)})")
    pattern = f"*_{split}.pth"
    matches = sorted(root.glob(pattern))
    if not matches:
        raise InputFileError(f"{root}: no annotation file matching {pattern} ({_LAYOUT.format(split=split)})")
    if len(matches) > 1:
        names = ", ".join(path.name for path in matches)
        raise InputFileError(
            f"{root}: several annotation files match {pattern} ({names}); keep one dataset per folder"
        )
    return matches[0]


def _numbers(value: object, count: int) -> tuple[float, ...] | None:
    """value as `count` finite floats, or None if it is anything else."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        return None
    floats = tuple(float(v) for v in value)
    return floats if all(np.isfinite(floats)) else None


def _parse_entry(entry: object, path: Path, index: int) -> CVOGLRecord:
    def bad(what: str) -> InputFileError:
        return InputFileError(f"{path}: entry {index}: {what}")

    if not isinstance(entry, (list, tuple)) or len(entry) != 8:
        raise bad(
            "not an 8-tuple (id, query_name, sat_name, click_full, click_xy, bbox_xyxy, polygon8, category)"
        )
    sample_id, query_name, sat_name, _, click, box, _, category = entry
    if not isinstance(sample_id, (int, str)) or isinstance(sample_id, bool):
        raise bad(f"id {sample_id!r} is not an integer or string")
    for field, value in (("query_name", query_name), ("sat_name", sat_name), ("category", category)):
        if not isinstance(value, str) or not value:
            raise bad(f"{field} {value!r} is not a non-empty string")
    click_xy = _numbers(click, 2)
    if click_xy is None:
        raise bad(f"click_xy {click!r} is not two finite numbers (x, y)")
    box_xyxy = _numbers(box, 4)
    if box_xyxy is None:
        raise bad(f"bbox {box!r} is not four finite numbers (x1, y1, x2, y2)")
    if not (box_xyxy[2] > box_xyxy[0] and box_xyxy[3] > box_xyxy[1]):
        raise bad(f"bbox {box!r} is empty (needs x2 > x1 and y2 > y1)")
    return CVOGLRecord(sample_id, query_name, sat_name, click_xy, box_xyxy, category)


def _check_images(root: Path, annotation: Path, records: Sequence[CVOGLRecord]) -> None:
    """InputFileError naming the first query or satellite file that is missing."""
    for folder, attribute in ((QUERY_DIR, "query_name"), (SATELLITE_DIR, "sat_name")):
        names = [getattr(record, attribute) for record in records]
        missing = [i for i, name in enumerate(names) if not (root / folder / name).is_file()]
        if missing:
            first = missing[0]
            raise InputFileError(
                f"{root / folder / names[first]}: image not found (referenced by {annotation.name} "
                f"entry {first}; {len(missing)} of {len(names)} {folder} references are missing)"
            )


def _image_size(path: Path, sizes: dict[Path, tuple[int, int]]) -> tuple[int, int]:
    if path not in sizes:
        with open_image(path) as image:  # the header only
            sizes[path] = image.size
    return sizes[path]


def _drop_outside(root: Path, annotation: Path, records: list[CVOGLRecord]) -> list[CVOGLRecord]:
    """The records whose click lies on the query image and whose box overlaps the satellite image.

    The others could only be scored as misses and trained towards nothing:
    they are left out with a warning naming them; none left is an InputFileError.
    """
    sizes: dict[Path, tuple[int, int]] = {}
    kept, dropped = [], []
    for record in records:
        width, height = _image_size(root / QUERY_DIR / record.query_name, sizes)
        sat_width, sat_height = _image_size(root / SATELLITE_DIR / record.sat_name, sizes)
        x, y = record.click_xy
        x1, y1, x2, y2 = record.box_xyxy
        on_image = 0 <= x < width and 0 <= y < height and x1 < sat_width and y1 < sat_height and x2 > 0 and y2 > 0
        (kept if on_image else dropped).append(record)
    if dropped:
        ids = ", ".join(str(record.id) for record in dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        message = (
            f"{annotation}: {len(dropped)} of {len(records)} samples have their click off the query image "
            f"or their box off the satellite image (ids {ids})"
        )
        if not kept:
            raise InputFileError(message)
        warnings.warn(f"{message}; they are left out", SmgeoWarning, stacklevel=3)
    return kept


def load_records(root: str | PathLike[str], split: str) -> list[CVOGLRecord]:
    """Read and validate ``<root>/*_<split>.pth``; check that every referenced image exists.

    Raises InputFileError naming the file and entry index for malformed data,
    and the first missing image file. Samples whose click is off the query
    image or whose box is off the satellite image are left out with a warning.
    """
    root = Path(root)
    path = find_annotation(root, split)
    try:
        entries = torch.load(path, map_location="cpu", weights_only=True)
    # torch raises many types (UnpicklingError, RuntimeError, EOFError...) that all mean one thing.
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputFileError(f"{path}: not a readable CVOGL annotation file ({reason})") from err
    if not isinstance(entries, (list, tuple)):
        raise InputFileError(f"{path}: holds a {type(entries).__name__}, expected a list of 8-tuples")
    if not entries:
        raise InputFileError(f"{path}: holds no samples")
    records = [_parse_entry(entry, path, index) for index, entry in enumerate(entries)]
    _check_images(root, path, records)
    return _drop_outside(root, path, records)


def write_records(
    root: str | PathLike[str], name: str, split: str, records: Iterable[CVOGLRecord]
) -> Path:
    """Write ``<root>/<name>_<split>.pth`` in the CVOGL format; return its path.

    click_full repeats click_xy and polygon8 is the box's corners (clockwise
    from top-left), since a record holds nothing else. The file is replaced
    atomically.
    """
    entries = []
    for record in records:
        x1, y1, x2, y2 = (float(v) for v in record.box_xyxy)
        click = [float(v) for v in record.click_xy]
        polygon = [x1, y1, x2, y1, x2, y2, x1, y2]
        box = [x1, y1, x2, y2]
        entries.append(
            (record.id, record.query_name, record.sat_name, click, click, box, polygon, record.category)
        )
    path = Path(root) / f"{name}_{split}.pth"
    with replace_atomically(path) as tmp:
        torch.save(entries, tmp)
    return path


def write_homographies(
    root: str | PathLike[str], name: str, split: str, homographies: dict[str, np.ndarray]
) -> Path:
    """Write the sidecar of ``<name>_<split>.pth``: query file name -> 3x3 satellite-to-query homography."""
    path = Path(root) / f"{name}_{split}{HOMOGRAPHY_SUFFIX}"
    document = {
        "maps": "satellite file pixels to query file pixels, pixel-edge convention",
        "homographies": {query: np.asarray(h, dtype=float).round(10).tolist() for query, h in homographies.items()},
    }
    write_text_atomic(path, json.dumps(document))
    return path


def read_homographies(root: str | PathLike[str], split: str) -> dict[str, np.ndarray]:
    """The split's sidecar homographies by query file name; empty when it has none.

    InputFileError names the file when it is unreadable or a matrix is not 3x3 finite numbers.
    """
    annotation = find_annotation(root, split)
    path = annotation.with_name(annotation.stem + HOMOGRAPHY_SUFFIX)
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())["homographies"]
        matrices = {str(query): np.array(h, dtype=np.float64) for query, h in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputFileError(f"{path}: not a readable homography file ({type(err).__name__}: {err})") from None
    for query, matrix in matrices.items():
        if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
            raise InputFileError(f"{path}: the homography for {query} is not a 3x3 matrix of finite numbers")
    return matrices


class CVOGLDataset(Dataset):
    """Pairs of a CVOGL split as model-ready tensors.

    Each item is a dict:
      - "query": (3, Q, Q) float32, ImageNet-normalised
      - "click": (2,) float32, (x, y) in Q-sized pixels
      - "ref": (3, R, R) float32, ImageNet-normalised
      - "box": (4,) float32, x1, y1, x2, y2 in R-sized pixels
      - "ref_scale": (2,) float32, (file width / R, file height / R): multiply
        R-sized x and y by it to get the satellite file's own pixels
      - "homography": (3, 3) float32, R-sized reference pixels to Q-sized
        query pixels (after augmentation); all NaN when the pair has none
      - "box_has_extent": bool, False for CATEGORY_RANDOM boxes, whose size
        and shape carry no information to learn
      - "index": int, position in ``records``

    With augment=True the reference gets flips, quarter turns, a box-keeping
    crop and colour jitter (before resizing, at full resolution) and the query
    gets colour jitter only. Augmentation draws from an RNG seeded by
    (seed, epoch, index), so every worker process and every epoch differ while
    a run stays reproducible; call ``set_epoch`` before each epoch (workers
    started with ``persistent_workers=True`` keep the epoch they started with).
    """

    def __init__(
        self,
        root: str | PathLike[str],
        split: str,
        query_size: int,
        ref_size: int,
        augment: bool = False,
        limit: int | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.records = load_records(self.root, split)[:limit]
        self.homographies = read_homographies(self.root, split)
        self.query_size = query_size
        self.ref_size = ref_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        record = self.records[index]
        query = read_rgb(self.root / QUERY_DIR / record.query_name)
        ref = read_rgb(self.root / SATELLITE_DIR / record.sat_name)
        click = np.array(record.click_xy)
        box = np.array(record.box_xyxy)
        ref_h, ref_w = ref.shape[:2]
        query_h, query_w = query.shape[:2]
        # Satellite-file to query-file pixels, then through augmentation and both resizes.
        homography = self.homographies.get(record.query_name, np.full((3, 3), np.nan))
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            ref, box, ref_map = augment_reference(ref, box, rng)
            homography = homography @ np.linalg.inv(ref_map)
            query = augment_query_colour(query, rng)
        query, click = resize_with_points(query, self.query_size, click)
        ref, box = resize_with_points(ref, self.ref_size, box)
        homography = (
            np.diag([self.query_size / query_w, self.query_size / query_h, 1.0])
            @ homography
            @ np.diag([ref_w / self.ref_size, ref_h / self.ref_size, 1.0])
        )
        return {
            "query": image_to_tensor(query),
            "click": torch.tensor(click, dtype=torch.float32),
            "ref": image_to_tensor(ref),
            "box": torch.tensor(box, dtype=torch.float32),
            "ref_scale": torch.tensor([ref_w / self.ref_size, ref_h / self.ref_size], dtype=torch.float32),
            "homography": torch.tensor(homography, dtype=torch.float32),
            "box_has_extent": record.category != CATEGORY_RANDOM,
            "index": index,
        }
