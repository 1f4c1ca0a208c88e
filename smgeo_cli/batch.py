"""A whole flight through :func:`smgeo_cli.locate.locate`: many queries, one raster, one output layer.

Queries come from a folder of photos with a clicks CSV, a manifest CSV with
per-row poses, or frames extracted from a DJI video with its SRT telemetry.
All queries share one detector and one tile-encoding cache (:class:`TileCache`:
bounded in memory, optionally on disk), and tiles are snapped to one grid per
raster so that photos over the same ground reuse each other's encodings.

Each finished query is appended to a JSON-lines journal (fsync'd) before the
next starts, so a crash loses at most the query in flight; ``resume`` skips
what the journal holds, and the output layer is always written from the
journal, each query once, in input order. Under torchrun each rank takes every
``world_size``-th query and journals to its own file; rank 0 merges.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smgeo_cli.errors import InputFileError, SmgeoError, UsageError
from smgeo_cli.geo.exif import read_photo_pose
from smgeo_cli.geo.flightlog import PhotoPose
from smgeo_cli.geo.manifest import ManifestRow, read_manifest
from smgeo_cli.geo.output import Feature, write_features
from smgeo_cli.geo.srt import frames_for_srt, read_srt
from smgeo_cli.io import replace_atomically, write_text_atomic
from smgeo_cli.locate import EncodedTile, SearchArea, TileDetector, locate_first_found
from smgeo_cli.matching.detector import TileFeatures

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
# In-memory tile cache budget: ~1 GiB holds about a thousand SMGeo-base tile encodings.
DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class Query:
    """One click to locate.

    ``id`` is stable across runs (image name and CSV line), ``index`` the
    query's place in the input, ``row`` where it was read (``file:line``) for
    error reports. ``pose`` is the row's or SRT entry's pose; None means the
    photo's own EXIF/XMP (read when the query runs, so a bad file fails only it).
    """

    id: str
    index: int
    photo: Path
    click: tuple[float, float]
    label: str | None
    pose: PhotoPose | None
    row: str


def _queries(rows: Sequence[ManifestRow], csv_path: Path, folder: Path, poses: dict[str, PhotoPose]) -> list[Query]:
    """Queries of CSV rows whose images live in ``folder``; a row's own pose beats ``poses`` (by file name)."""
    queries = []
    for index, row in enumerate(rows):
        photo = folder / row.image
        queries.append(
            Query(
                id=f"{row.image}#{row.line}",
                index=index,
                photo=photo,
                click=(row.click_x, row.click_y),
                label=row.label,
                pose=row.pose or poses.get(photo.name),
                row=f"{csv_path}:{row.line}",
            )
        )
    return queries


def build_queries(
    source: str | Path, clicks: str | Path | None = None, srt: str | Path | None = None, fps: float | None = None
) -> list[Query]:
    """The queries of a batch, in input order.

    - ``source`` a CSV: a manifest (``image,click_x,click_y[,lat,lon,...]``),
      images relative to its folder.
    - ``source`` a folder and ``clicks`` a CSV: photos in the folder, clicks
      (and optional poses) from the CSV.
    - with ``srt`` as well: ``source`` holds frames extracted from the video
      (numbered files, at ``fps`` frames per second, or one per SRT entry),
      whose poses come from the SRT unless the CSV row has one.

    Raises UsageError for a combination that does not fit, InputFileError
    for unreadable or malformed inputs.
    """
    source = Path(source)
    if source.is_file():
        if clicks is not None or srt is not None:
            raise UsageError(f"{source} is a manifest CSV: --clicks and --srt need a folder of photos instead")
        return _queries(read_manifest(source), source, source.parent, {})
    if not source.is_dir():
        raise InputFileError(f"{source}: no such folder or manifest CSV")
    if clicks is None:
        raise UsageError(f"{source} is a folder: give the clicks with --clicks CSV (image,click_x,click_y[,label])")
    clicks = Path(clicks)
    poses: dict[str, PhotoPose] = {}
    if srt is not None:
        frames = sorted(p for p in source.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not frames:
            raise InputFileError(f"{source}: no frames ({', '.join(PHOTO_SUFFIXES)}) to pair with {srt}")
        poses = {frame.name: entry.pose for frame, entry in frames_for_srt(frames, read_srt(srt), fps) if entry.pose}
    elif fps is not None:
        raise UsageError("--fps needs --srt")
    return _queries(read_manifest(clicks), clicks, source, poses)


# Name prefix of a matcher tile's arrays in a disk cache entry.
_FEATURES_PREFIX = "features."


def _tensor_arrays(encoding: Any) -> dict[str, np.ndarray] | None:
    """The arrays to store an encoding on disk: a tensor, an array or a matcher's tile features; else None."""
    if isinstance(encoding, torch.Tensor):
        return {"tensor": encoding.detach().cpu().numpy()}
    if isinstance(encoding, np.ndarray):
        return {"array": encoding}
    if isinstance(encoding, TileFeatures):
        return {_FEATURES_PREFIX + name: array for name, array in encoding.to_arrays().items()}
    return None


def _stored_encoding(stored: Any, device: torch.device) -> Any:
    """The encoding a disk cache entry holds (the inverse of ``_tensor_arrays``)."""
    if "tensor" in stored:
        return torch.from_numpy(stored["tensor"]).to(device)
    if "array" in stored:
        return stored["array"]
    prefix = len(_FEATURES_PREFIX)
    return TileFeatures.from_arrays({name[prefix:]: stored[name] for name in stored.files if name.startswith(_FEATURES_PREFIX)})


def _nbytes(value: Any) -> int:
    """Memory held by an encoding: its tensors and arrays, through tuples, lists and dataclasses."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if is_dataclass(value):
        return sum(_nbytes(getattr(value, f.name)) for f in fields(value))
    return 0


class TileCache(MutableMapping):
    """Tile encodings kept for later queries: least-recently-used in memory, optionally on disk.

    Memory holds at most ``max_bytes`` of encodings (the oldest go first).
    With ``folder``, tensor and array encodings are also written there, one
    ``.npz`` per tile named by a hash of its key, atomically, so a later run
    over the same raster with the same model skips encoding; tensors come back
    on ``device``. ``stores`` counts encodings put in (tiles encoded), ``hits``
    encodings found (in memory or on disk).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, folder: str | Path | None = None, device="cpu") -> None:
        self.max_bytes = max_bytes
        self.folder = Path(folder) if folder is not None else None
        self.device = torch.device(device)
        self._memory: OrderedDict[Any, tuple[EncodedTile, int]] = OrderedDict()
        self._bytes = 0
        self.stores = 0
        self.hits = 0
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputFileError(f"--cache-dir {self.folder}: cannot create it ({exc})") from exc

    def _file(self, key: Any) -> Path:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npz"

    def _remember(self, key: Any, tile: EncodedTile) -> None:
        size = _nbytes(tile.encoding) + tile.valid.nbytes
        if key in self._memory:
            self._bytes -= self._memory.pop(key)[1]
        self._memory[key] = (tile, size)
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._memory) > 1:
            self._bytes -= self._memory.popitem(last=False)[1][1]

    def _load(self, key: Any) -> EncodedTile | None:
        if self.folder is None or not (path := self._file(key)).is_file():
            return None
        with np.load(path) as stored:
            return EncodedTile(_stored_encoding(stored, self.device), stored["valid"])

    def __getitem__(self, key: Any) -> EncodedTile:
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key][0]
        tile = self._load(key)
        if tile is None:
            raise KeyError(key)
        self._remember(key, tile)
        self.hits += 1
        return tile

    def __setitem__(self, key: Any, tile: EncodedTile) -> None:
        self.stores += 1
        self._remember(key, tile)
        arrays = _tensor_arrays(tile.encoding) if self.folder is not None else None
        if arrays is not None:
            path = self._file(key)
            path.parent.mkdir(exist_ok=True)
            buffer = io.BytesIO()
            np.savez(buffer, valid=tile.valid, **arrays)
            with replace_atomically(path) as tmp:
                tmp.write_bytes(buffer.getvalue())

    def __delitem__(self, key: Any) -> None:
        self._bytes -= self._memory.pop(key)[1]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._memory)

    def __len__(self) -> int:
        return len(self._memory)


def journal_path(output: str | Path, rank: int | None = None) -> Path:
    """``<output>.journal``, or ``<output>.journal.rank<r>`` for one rank of a distributed run."""
    output = Path(output)
    suffix = ".journal" if rank is None else f".journal.rank{rank}"
    return output.with_name(output.name + suffix)


def journal_files(output: str | Path) -> list[Path]:
    """Every journal of ``output``: single-process and per-rank ones (a resume may change the rank count)."""
    single = journal_path(output)
    return sorted(single.parent.glob(single.name + "*"))


def errors_path(output: str | Path) -> Path:
    """``<output stem>.errors.csv`` beside the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.errors.csv")


def read_journals(paths: Sequence[Path]) -> dict[str, dict]:
    """Records by query id; a torn last line (a crash mid-write) is ignored, the first record of an id wins."""
    records: dict[str, dict] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records.setdefault(record["id"], record)
    return records


class Journal:
    """Appends one JSON record per line to ``path`` and fsyncs it, so a finished query survives a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file():
            text = path.read_bytes()
            if text and not text.endswith(b"\n"):
                # A record torn by a crash: cut it, or the next record would be glued to it.
                with open(path, "r+b") as file:
                    file.truncate(text.rfind(b"\n") + 1)
        self._file = open(path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _pose_properties(pose: PhotoPose | None) -> dict[str, Any]:
    if pose is None:
        return {}
    values = {"lat": pose.lat, "lon": pose.lon, "rel_alt": pose.rel_alt_m, "yaw": pose.yaw_deg, "pitch": pose.pitch_deg}
    values["time"] = pose.time.isoformat() if pose.time else None
    return {key: value for key, value in values.items() if value is not None}


def _feature_record(feature: Feature) -> dict:
    return {
        "ring_lonlat": feature.ring_lonlat.tolist(),
        "ring_xy": feature.ring_xy.tolist(),
        "properties": feature.properties,
    }


def _record_feature(record: dict, crs_wkt: str) -> Feature:
    return Feature(np.asarray(record["ring_lonlat"]), np.asarray(record["ring_xy"]), crs_wkt, record["properties"])


def run_query(
    query: Query, raster: Path, detectors: Sequence[TileDetector], cache: MutableMapping, **options
) -> dict:
    """The journal record of one query: its features, or the reason it failed (any SmgeoError).

    ``detectors`` are tried in turn (:func:`locate_first_found`); ``options``
    go to :func:`locate` (bands, gsd_m, tile_overlap, batch_size, top_k, search).
    """
    record = {"id": query.id, "index": query.index, "row": query.row, "image": str(query.photo)}
    try:
        # With --no-gps a photo's EXIF is not read at all, so a malformed GPS block cannot fail the query.
        pose = query.pose or (read_photo_pose(query.photo) if options.get("search", SearchArea()).use_gps else None)
        result = locate_first_found(
            query.photo, query.click, raster, detectors, pose=pose, snap_tiles=True, cache=cache, **options
        )
    except SmgeoError as exc:
        return {**record, "ok": False, "reason": str(exc)}
    extra = {"image": query.photo.name, "label": query.label, **_pose_properties(pose), "query_id": query.id}
    extra = {key: value for key, value in extra.items() if value is not None}
    features = [replace(f, properties={**f.properties, **extra}) for f in result.features]
    crs_wkt = features[0].crs_wkt if features else None
    return {**record, "ok": True, "crs_wkt": crs_wkt, "features": [_feature_record(f) for f in features]}


@dataclass
class BatchStats:
    """Counts of one run (of one rank, until summed): queries in all, done and failed now, skipped as resumed."""

    queries: int = 0
    done: int = 0
    failed: int = 0
    resumed: int = 0
    tiles_encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        counts = {k: getattr(self, k) for k in ("queries", "done", "failed", "resumed", "tiles_encoded", "cache_hits")}
        return {**counts, "seconds": round(self.seconds, 3)}


def run_batch(
    queries: Sequence[Query],
    raster: str | Path,
    detectors: Sequence[TileDetector],
    output: str | Path,
    *,
    cache: TileCache,
    rank: int | None = None,
    world_size: int = 1,
    on_query: Callable[[Query, dict], None] | None = None,
    **options,
) -> BatchStats:
    """Run this rank's share of ``queries`` (index % world_size == rank), journaling each as it finishes.

    Each query tries ``detectors`` in turn (the first with a hit answers).

    Queries already in any journal of ``output`` are skipped (call
    :func:`clear_journals` first for a fresh run). ``rank`` None is a single
    process. ``on_query(query, record)`` is called after each query, skipped
    ones included (record ``{"resumed": True}``). Returns this rank's counts.
    """
    start = time.perf_counter()
    done = read_journals(journal_files(output))
    mine = [q for q in queries if q.index % world_size == (rank or 0)]
    stats = BatchStats(queries=len(mine))
    encoded_before, hits_before = cache.stores, cache.hits
    journal = Journal(journal_path(output, rank))
    try:
        for query in mine:
            if query.id in done:
                stats.resumed += 1
                record = {"resumed": True}
            else:
                record = run_query(query, Path(raster), detectors, cache, **options)
                journal.append(record)
                stats.done += record["ok"]
                stats.failed += not record["ok"]
            if on_query:
                on_query(query, record)
    finally:
        journal.close()
    stats.tiles_encoded = cache.stores - encoded_before
    stats.cache_hits = cache.hits - hits_before
    stats.seconds = time.perf_counter() - start
    return stats


def clear_journals(output: str | Path) -> None:
    """Delete every journal of ``output``: the next run starts from nothing."""
    for path in journal_files(output):
        path.unlink()


def write_output(queries: Sequence[Query], output: str | Path) -> list[dict]:
    """Write the output layer from the journals: every query once, in input order; returns the failed records.

    Failed queries go to ``<output stem>.errors.csv`` (row, image, reason),
    written atomically; a stale one is removed when nothing failed. Raises
    InputFileError when a query has no record (a rank did not finish).
    """
    records = read_journals(journal_files(output))
    missing = [q.id for q in queries if q.id not in records]
    if missing:
        raise InputFileError(
            f"{len(missing)} queries have no result in the journals of {output} (first: {missing[0]}); "
            "run again with --resume"
        )
    features, failed = [], []
    for query in queries:
        record = records[query.id]
        if record["ok"]:
            features += [_record_feature(f, record["crs_wkt"]) for f in record["features"]]
        else:
            failed.append(record)
    write_features(output, features)
    errors = errors_path(output)
    if failed:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["row", "image", "reason"])
        writer.writerows([r["row"], r["image"], r["reason"]] for r in failed)
        write_text_atomic(errors, text.getvalue())
    elif errors.is_file():
        errors.unlink()
    return failed
