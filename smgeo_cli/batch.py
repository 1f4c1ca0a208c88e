"""A whole flight through :func:`smgeo_cli.locate.locate`: many queries, one raster, one output layer.

Queries come from a folder of photos with a clicks CSV, a manifest CSV with
per-row poses, or frames extracted from a DJI video with its SRT telemetry.
All queries share one detector and one tile-encoding cache (:class:`TileCache`:
bounded in memory, optionally on disk), and tiles are snapped to one grid per
raster so that photos over the same ground reuse each other's encodings.

Each finished query is appended to a JSON-lines journal (fsync'd) before the
next starts, so a crash loses at most the query in flight; a resumed run skips
what the journal holds, and the output layer is always written from the
journal, each query once, in input order. A journal opens with the run's
settings (raster, method, options): a resume with other settings is refused
rather than mixing two runs' answers, and a query whose click, label or pose
changed since its record was written (an edited clicks CSV) runs again. Under
torchrun each rank takes every ``world_size``-th query and journals to its own
file; rank 0 merges.

One query's failure, of any kind (a bad CSV row, an unreadable photo, a
damaged raster block, OpenCV or memory errors), is recorded with its reason
and the run goes on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
import traceback
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from smgeo_cli import __version__
from smgeo_cli.errors import InputFileError, SmgeoError, UsageError, describe_exception
from smgeo_cli.geo.exif import read_photo_pose
from smgeo_cli.geo.flightlog import PhotoPose
from smgeo_cli.geo.manifest import ManifestRow, read_manifest
from smgeo_cli.geo.output import Feature, write_features
from smgeo_cli.geo.srt import frames_for_srt, read_srt
from smgeo_cli.io import replace_atomically, write_text_atomic
from smgeo_cli.locate import EncodedTile, SearchArea, TileDetector, locate_first_found
from smgeo_cli.matching.detector import TileFeatures

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
# Part of every disk cache key: raise it whenever reading, stretching or tiling a raster changes
# what a tile looks like, so that an upgrade never reuses encodings made the old way.
TILE_FORMAT_VERSION = 2
# In-memory tile cache budget: ~1 GiB holds about a thousand SMGeo-base tile encodings.
DEFAULT_CACHE_BYTES = 1 << 30
# Options that do not change a query's answer: a resume may change them freely.
UNRECORDED_OPTIONS = ("batch_size", "max_tiles", "on_progress")


@dataclass(frozen=True)
class Query:
    """One click to locate.

    ``id`` is stable across runs (image name and CSV line), ``index`` the
    query's place in the input, ``row`` where it was read (``file:line``) for
    error reports. ``pose`` is the row's or SRT entry's pose; None means the
    photo's own EXIF/XMP (read when the query runs, so a bad file fails only it).
    ``problem`` says why a query cannot run at all (a malformed CSV row, an
    SRT entry with a bad position): it is recorded as failed without running.
    """

    id: str
    index: int
    photo: Path
    click: tuple[float, float]
    label: str | None
    pose: PhotoPose | None
    row: str
    problem: str | None = None

    @property
    def key(self) -> str:
        """A digest of what the query asks, so that a resume can tell an edited row from the one it journaled."""
        asked = repr((self.photo.name, self.click, self.label, self.pose, self.problem))
        return hashlib.sha256(asked.encode()).hexdigest()[:16]


def _queries(
    rows: Sequence[ManifestRow],
    csv_path: Path,
    folder: Path,
    poses: dict[str, PhotoPose],
    pose_problems: dict[str, str],
) -> list[Query]:
    """Queries of CSV rows whose images live in ``folder``; a row's own pose beats ``poses`` (by file name).

    A row without a pose of its own whose image has an entry in
    ``pose_problems`` (by file name) fails with that reason.
    """
    queries = []
    for index, row in enumerate(rows):
        photo = folder / row.image
        problem = row.problem or (None if row.pose else pose_problems.get(photo.name))
        queries.append(
            Query(
                id=f"{row.image}#{row.line}",
                index=index,
                photo=photo,
                click=(row.click_x, row.click_y),
                label=row.label,
                pose=row.pose or poses.get(photo.name),
                row=f"{csv_path}:{row.line}",
                problem=problem,
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
        return _queries(read_manifest(source), source, source.parent, {}, {})
    if not source.is_dir():
        raise InputFileError(f"{source}: no such folder or manifest CSV")
    if clicks is None:
        raise UsageError(f"{source} is a folder: give the clicks with --clicks CSV (image,click_x,click_y[,label])")
    clicks = Path(clicks)
    poses: dict[str, PhotoPose] = {}
    problems: dict[str, str] = {}
    if srt is not None:
        frames = sorted(p for p in source.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not frames:
            raise InputFileError(f"{source}: no frames ({', '.join(PHOTO_SUFFIXES)}) to pair with {srt}")
        for frame, entry in frames_for_srt(frames, read_srt(srt), fps):
            if entry.pose:
                poses[frame.name] = entry.pose
            elif entry.problem:
                problems[frame.name] = f"{srt}: entry {entry.index}: {entry.problem}"
    elif fps is not None:
        raise UsageError("--fps needs --srt")
    return _queries(read_manifest(clicks), clicks, source, poses, problems)


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
    ``.npz`` per tile named by a hash of its key, smgeo's version and
    ``TILE_FORMAT_VERSION``, atomically, so a later run of the same smgeo over
    the same raster with the same model skips encoding; tensors come back on
    ``device``. A stored entry that cannot be read back (a damaged disk, a
    killed copy) is deleted and counts as missing, so the tile is encoded again. ``stores`` counts encodings put in (tiles encoded), ``hits``
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
        digest = hashlib.sha256(repr((__version__, TILE_FORMAT_VERSION, key)).encode()).hexdigest()
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
        try:
            # Arrays only: np.load refuses pickled objects by default.
            with np.load(path) as stored:
                return EncodedTile(_stored_encoding(stored, self.device), stored["valid"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            return None

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


@dataclass
class JournalContents:
    """What the journals of an output hold: the settings of each run that wrote them, and records by query id."""

    settings: list[dict]
    records: dict[str, list[dict]]
    unsigned: list[Path]

    def record_for(self, query: Query) -> dict | None:
        """The record that answers ``query`` as it is now: a success before a failure, the later of two alike.

        Records of an earlier version of the query (another click, label or pose) answer nothing.
        """
        mine = [r for r in self.records.get(query.id, []) if r.get("key") == query.key]
        ok = [r for r in mine if r.get("ok")]
        return (ok or mine or [None])[-1]


def read_journals(paths: Sequence[Path]) -> JournalContents:
    """Settings and records of the journals at ``paths``; lines a crash tore (or anything not a record) are skipped.

    ``unsigned`` lists journals holding records but no settings line (written
    by an older smgeo): what options made them cannot be known.
    """
    contents = JournalContents([], {}, [])
    for path in paths:
        signed, recorded = False, False
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("run"), dict):
                contents.settings.append(record["run"])
                signed = True
            elif isinstance(record, dict) and isinstance(record.get("id"), str):
                contents.records.setdefault(record["id"], []).append(record)
                recorded = True
        if recorded and not signed:
            contents.unsigned.append(path)
    return contents


def run_settings(raster: Path, detectors: Sequence[TileDetector], options: dict[str, Any]) -> dict[str, Any]:
    """What every record of a run depends on besides its query: the raster file, the methods and the options.

    Options that change how fast a run goes or how it reports progress but
    not its answers (batch size, the tile limit, the ``on_progress``
    callback) are left out. JSON-ready, as the journal stores it.
    """
    try:
        stat = raster.stat()
    except OSError as err:
        raise InputFileError(f"reference raster {raster}: {err.strerror}") from None
    chosen = {k: v for k, v in options.items() if k not in UNRECORDED_OPTIONS}
    if "search" in chosen:
        chosen["search"] = asdict(chosen["search"])
    settings = {
        "ref": str(raster.resolve()),
        "ref_bytes": stat.st_size,
        "ref_mtime_ns": stat.st_mtime_ns,
        # A detector whose answers depend on more than its tiles' encodings says so in ``run_key``.
        "methods": [getattr(detector, "run_key", detector.cache_key) for detector in detectors],
        **chosen,
    }
    return json.loads(json.dumps(settings, default=list))


def _check_settings(contents: JournalContents, settings: dict[str, Any], output: Path) -> None:
    """UsageError when the journals of ``output`` were written by a run with other settings."""
    if contents.unsigned:
        raise UsageError(
            f"--resume: {contents.unsigned[0]} was written by an older smgeo and does not say which options made it; "
            "run again without --resume to start over"
        )
    for old in contents.settings:
        changed = sorted(key for key in old.keys() | settings.keys() if old.get(key) != settings.get(key))
        if changed:
            detail = "; ".join(f"{key} was {old.get(key)!r}, now {settings.get(key)!r}" for key in changed)
            raise UsageError(
                f"--resume: the journal of {output} comes from a run with other settings ({detail}); "
                "resume with the same options, or run again without --resume to start over"
            )


class Journal:
    """Appends one JSON record per line to ``path`` and fsyncs it, so a finished query survives a crash.

    It opens with a line holding the run's ``settings``.
    """

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        if path.is_file():
            text = path.read_bytes()
            if text and not text.endswith(b"\n"):
                # A record torn by a crash: cut it, or the next record would be glued to it.
                with open(path, "r+b") as file:
                    file.truncate(text.rfind(b"\n") + 1)
        self._file = open(path, "a", encoding="utf-8")
        self.append({"run": settings})

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
    """The journal record of one query: its features, or the reason it failed.

    ``detectors`` are tried in turn (:func:`locate_first_found`); ``options``
    go to :func:`locate` (bands, gsd_m, tile_overlap, batch_size, top_k,
    search, max_tiles). Any exception but an interrupt fails this query
    only: a user error gives its message; anything else (rasterio, OpenCV,
    memory) its type and message, with the traceback kept in the record for
    a bug report.
    """
    record = {"id": query.id, "key": query.key, "index": query.index, "row": query.row, "image": str(query.photo)}
    if query.problem:
        return {**record, "ok": False, "reason": query.problem}
    try:
        # With --no-gps a photo's EXIF is not read at all, so a malformed GPS block cannot fail the query.
        pose = query.pose or (read_photo_pose(query.photo) if options.get("search", SearchArea()).use_gps else None)
        result = locate_first_found(
            query.photo, query.click, raster, detectors, pose=pose, snap_tiles=True, cache=cache, **options
        )
    except SmgeoError as exc:
        return {**record, "ok": False, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one query's failure must not end the flight
        return {**record, "ok": False, "reason": describe_exception(exc), "traceback": traceback.format_exc()}
    extra = {"image": query.photo.name, "label": query.label, **_pose_properties(pose), "query_id": query.id}
    extra = {key: value for key, value in extra.items() if value is not None}
    features = [replace(f, properties={**f.properties, **extra}) for f in result.features]
    crs_wkt = features[0].crs_wkt if features else None
    return {**record, "ok": True, "crs_wkt": crs_wkt, "features": [_feature_record(f) for f in features]}


@dataclass
class BatchStats:
    """Counts of one run (of one rank, until summed).

    ``done`` and ``failed`` count queries run now, ``resumed`` those the
    journal already answered, ``changed`` those run again because their row
    changed since the journal was written.
    """

    queries: int = 0
    done: int = 0
    failed: int = 0
    resumed: int = 0
    changed: int = 0
    tiles_encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0

    COUNTS: ClassVar[tuple[str, ...]] = (
        "queries", "done", "failed", "resumed", "changed", "tiles_encoded", "cache_hits"
    )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.COUNTS}, "seconds": round(self.seconds, 3)}


def run_batch(
    queries: Sequence[Query],
    raster: str | Path,
    detectors: Sequence[TileDetector],
    output: str | Path,
    *,
    cache: TileCache,
    rank: int | None = None,
    world_size: int = 1,
    retry_failed: bool = False,
    on_query: Callable[[Query, dict], None] | None = None,
    **options,
) -> BatchStats:
    """Run this rank's share of ``queries`` (index % world_size == rank), journaling each as it finishes.

    Each query tries ``detectors`` in turn (the first with a hit answers).

    Queries the journals of ``output`` already answer are skipped (call
    :func:`clear_journals` first for a fresh run); with ``retry_failed``,
    those recorded as failed run again. Journals written with other settings
    (:func:`run_settings`) raise UsageError before anything runs. ``rank``
    None is a single process. ``on_query(query, record)`` is called after
    each query, skipped ones included (record ``{"resumed": True}``).
    Returns this rank's counts.
    """
    start = time.perf_counter()
    raster = Path(raster)
    settings = run_settings(raster, detectors, options)
    journals = read_journals(journal_files(output))
    _check_settings(journals, settings, Path(output))
    mine = [q for q in queries if q.index % world_size == (rank or 0)]
    stats = BatchStats(queries=len(mine))
    encoded_before, hits_before = cache.stores, cache.hits
    journal = Journal(journal_path(output, rank), settings)
    try:
        for query in mine:
            answer = journals.record_for(query)
            if answer is not None and (answer["ok"] or not retry_failed):
                stats.resumed += 1
                record = {"resumed": True}
            else:
                stats.changed += answer is None and query.id in journals.records
                record = run_query(query, raster, detectors, cache, **options)
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
    journals = read_journals(journal_files(output))
    records = [journals.record_for(query) for query in queries]
    missing = [q.id for q, record in zip(queries, records) if record is None]
    if missing:
        raise InputFileError(
            f"{len(missing)} queries have no result in the journals of {output} (first: {missing[0]}); "
            "run again with --resume"
        )
    features, failed = [], []
    for record in records:
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
