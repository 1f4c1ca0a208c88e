"""The locate pipeline: a click on a drone photo to ranked footprints on a georeferenced raster.

photo + click -> the query, encoded once; raster -> search window (a bbox,
a circle around the photo's GPS ground point, or all of it) -> tiles at the
method's ground sample distance -> batches of tile images -> the method's
boxes in tile pixels -> boxes in full-raster pixels -> one box per object
across tile seams -> the top k as GIS features.

The method is pluggable: anything with the :class:`TileDetector` interface
reuses the tiling, GSD handling, merging and output. :class:`SMGeoDetector`
runs the SMGeo network. A detector's tile encodings do not depend on the
query, so a mapping passed as ``cache`` keeps them for later queries on the
same tiles.

Pixel conventions are those of :mod:`smgeo_cli.geo.coords`: boxes are
(x1, y1, x2, y2) on pixel edges, clicks (x, y) from the photo's top-left
as displayed.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from rasterio.windows import Window

from smgeo_cli.data.transforms import image_to_tensor, resize_with_points, turn_with_points
from smgeo_cli.defaults import DEFAULT_MAX_TILES, DEFAULT_SEARCH_RADIUS_M
from smgeo_cli.errors import InputFileError, NoDataError, UsageError
from smgeo_cli.geo.exif import photo_hints, read_photo_pose
from smgeo_cli.geo.flightlog import PhotoPose, ground_point
from smgeo_cli.geo.output import Detection, Feature, make_feature
from smgeo_cli.geo.raster import ReferenceRaster, has_valid_pixels, open_reference, read_env
from smgeo_cli.geo.search_area import bbox_window, circle_window, full_window
from smgeo_cli.geo.tiling import Tile, iter_tiles, nms, plan_grid_tiles, plan_tiles, tile_box_to_raster
from smgeo_cli.images import read_rgb
from smgeo_cli.matching import MatchDetector
from smgeo_cli.model.head import decode_detections
from smgeo_cli.model.smgeo import SMGeo
from smgeo_cli.verify import VERIFY_KEYS, verify_hits

# Two boxes whose intersection covers more than this share of the smaller one
# are the same object seen from two tiles.
MERGE_THRESHOLD = 0.5
# A box reaching within this many tile pixels of a tile's side is taken as cut by it.
TILE_EDGE_MARGIN_PX = 1.0

# What --json reports of each hit.
HIT_SUMMARY_KEYS = ("rank", "score", "bbox_px", "center_lon", "center_lat", "area_m2")

T = TypeVar("T")


class TileDetector(Protocol):
    """A method that finds the clicked object in square reference tiles.

    ``tile_size`` is the tile side in the method's pixels and ``gsd_m`` the
    ground metres per pixel it expects by default. ``name`` labels the output;
    ``cache_key`` identifies what ``encode_tiles`` computes (method, weights,
    parameters), so cached encodings are reused only by the same method.
    """

    name: str
    tile_size: int
    gsd_m: float

    @property
    def cache_key(self) -> str: ...

    def encode_query(
        self,
        photo_rgb: np.ndarray,
        click_xy: tuple[float, float],
        *,
        heading_deg: float | None = None,
        zoom: float | None = None,
    ) -> Any:
        """The query from the photo (H, W, 3) uint8 and the click (x, y) in its pixels.

        ``heading_deg`` is the bearing the photo's top faces (degrees clockwise
        from north) and ``zoom`` tile pixels per photo pixel, each None when
        the photo's metadata does not say; a method may use them.
        """

    def encode_tiles(self, tiles_rgb: np.ndarray) -> list[Any]:
        """One query-independent encoding per tile of (B, S, S, 3) uint8 tiles."""

    def detect(self, query: Any, encodings: Sequence[Any], top_k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per encoded tile, up to ``top_k`` boxes (K, 4) in tile pixels and their scores (K,), best first."""


class SMGeoDetector:
    """The SMGeo network as a :class:`TileDetector`; tile encodings are its reference feature maps."""

    def __init__(self, model: SMGeo) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.name = model.config.name
        self.tile_size = model.config.ref_size
        self.gsd_m = model.config.ref_gsd_m

    @cached_property
    def cache_key(self) -> str:
        """A hash of the config and every weight: two models share cached features only if identical."""
        digest = hashlib.sha256(json.dumps(self.model.config.to_dict(), sort_keys=True).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return f"smgeo-{digest.hexdigest()[:16]}"

    @torch.inference_mode()
    def encode_query(
        self,
        photo_rgb: np.ndarray,
        click_xy: tuple[float, float],
        *,
        heading_deg: float | None = None,
        zoom: float | None = None,
    ) -> torch.Tensor:
        """(1, D) query vector of the photo resized to ``query_size`` square, the click scaled with it.

        With ``heading_deg`` the photo is first turned north-up, as the tiles
        are: the network learnt views at every heading, yet finds more objects
        in views that face the tile's way (benchmarks/README.md). ``zoom`` is
        not used: it learnt every scale.
        """
        size = self.model.config.query_size
        image, click = photo_rgb, np.asarray(click_xy, dtype=np.float64)
        if heading_deg is not None:
            # Twice the input side keeps all the resize below uses, at a fraction of a full-size warp.
            image, click = turn_with_points(image, heading_deg, click, max_side=2 * size)
        image, click = resize_with_points(image, size, click)
        query = image_to_tensor(image)[None].to(self.device)
        click_t = torch.as_tensor(click, dtype=torch.float32, device=self.device)[None]
        vector = self.model.encode_query(query, click_t)
        # Each GMoE call keeps its auxiliary losses until popped; inference never reads them.
        self.model.pop_aux_losses()
        return vector

    @torch.inference_mode()
    def encode_tiles(self, tiles_rgb: np.ndarray) -> list[torch.Tensor]:
        """Reference features (D, S / stride, S / stride) of each tile."""
        batch = torch.stack([image_to_tensor(rgb) for rgb in tiles_rgb]).to(self.device)
        features = self.model.encode_reference(batch)
        self.model.pop_aux_losses()
        return list(features)

    @torch.inference_mode()
    def detect(
        self, query: torch.Tensor, encodings: Sequence[torch.Tensor], top_k: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        maps = self.model.predict_maps(torch.stack(list(encodings)), query)
        self.model.pop_aux_losses()
        boxes, scores = decode_detections(maps, self.model.stride, top_k)
        boxes, scores = boxes.cpu().double().numpy(), scores.cpu().double().numpy()
        return list(zip(boxes, scores))


@dataclass(frozen=True)
class SearchArea:
    """Where to look on the raster.

    ``bbox`` (minx, miny, maxx, maxy) in ``bbox_crs`` (default the raster's
    CRS) wins; otherwise, with ``use_gps``, a circle of ``radius_m`` metres
    around the ground point the photo's GPS and gimbal metadata give; else,
    or when the photo has no position, the whole raster.
    """

    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str | None = None
    use_gps: bool = True
    radius_m: float = DEFAULT_SEARCH_RADIUS_M


@dataclass(frozen=True)
class SearchWindow:
    """The search area chosen: ``kind`` is "bbox", "gps" or "raster"; ``window`` in full-raster pixels.

    ``ground_point`` is the (lon, lat) in degrees the GPS circle is centred on.
    """

    kind: str
    window: Window
    ground_point: tuple[float, float] | None = None


@dataclass(frozen=True)
class EncodedTile:
    """What a cache holds for a tile: the detector's encoding and the tile's (S, S) bool valid-data mask."""

    encoding: Any
    valid: np.ndarray


@dataclass
class LocateResult:
    """The outcome of one :func:`locate` call.

    ``detections`` and ``features`` are best first (rank 1 first).
    ``photo_size`` is (width, height) as displayed; ``tiles_planned`` counts
    the tiles over the search area, ``tiles_scanned`` those holding data;
    ``timings_s`` holds seconds spent encoding the query, scanning the tiles
    and in all.
    """

    photo: Path
    click: tuple[float, float]
    photo_size: tuple[int, int]
    raster_path: Path
    raster_crs: str
    model: str
    model_gsd_m: float
    search: SearchWindow
    tiles_planned: int
    tiles_scanned: int
    detections: list[Detection]
    features: list[Feature]
    timings_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready one-object account: the hits, the search area and the timings."""
        window = self.search.window
        return {
            "query": str(self.photo),
            "click": list(self.click),
            "photo_size": list(self.photo_size),
            "ref": str(self.raster_path),
            "ref_crs": self.raster_crs,
            "model": self.model,
            "model_gsd_m": self.model_gsd_m,
            "search": {
                "kind": self.search.kind,
                "window_px": [round(v, 3) for v in (window.col_off, window.row_off, window.width, window.height)],
                "ground_point": list(self.search.ground_point) if self.search.ground_point else None,
            },
            "tiles": {"planned": self.tiles_planned, "scanned": self.tiles_scanned},
            "hits": [
                {key: f.properties[key] for key in (*HIT_SUMMARY_KEYS, *VERIFY_KEYS) if key in f.properties}
                for f in self.features
            ],
            "timings_s": {name: round(seconds, 3) for name, seconds in self.timings_s.items()},
        }


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the operating system (glibc; elsewhere a no-op).

    Tensor sizes change from batch to batch (GMoE experts get a different
    number of tokens each time), and glibc serves them from a heap that
    fragments: without this, peak memory on CPU grows with the number of
    tiles, to over twice its first-batch level after a few hundred batches.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def check_click(click_xy: tuple[float, float], photo_size: tuple[int, int], photo: str | Path) -> None:
    """Raise UsageError unless the click (x, y) lies on a pixel of a (width, height) photo."""
    x, y = click_xy
    width, height = photo_size
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
        raise UsageError(
            f"click {x:g},{y:g} is outside photo {photo} ({width} x {height} pixels as displayed): "
            f"x must be in [0, {width}) and y in [0, {height})"
        )


def search_window(
    raster: ReferenceRaster, photo: str | Path, search: SearchArea, pose: PhotoPose | None = None
) -> SearchWindow:
    """The window of ``raster`` to scan for ``photo`` (see :class:`SearchArea`).

    ``pose`` (from a flight log or manifest) is used instead of the photo's
    EXIF/XMP when given. Raises GeoreferenceError when the bbox or the GPS
    ground point misses the raster.
    """
    if search.bbox is not None:
        return SearchWindow("bbox", bbox_window(raster, search.bbox, search.bbox_crs))
    if search.use_gps:
        if pose is None:
            try:
                pose = read_photo_pose(photo)
            except InputFileError as err:
                raise InputFileError(f"{err}; or search without the photo's position (--no-gps)") from err
        if pose is not None:
            lat, lon = ground_point(pose)
            return SearchWindow("gps", circle_window(raster, lon, lat, search.radius_m), (lon, lat))
    return SearchWindow("raster", full_window(raster))


def _tile_key(detector: TileDetector, raster: ReferenceRaster, tile: Tile) -> tuple:
    window = tile.window
    placement = tuple(round(v, 6) for v in (window.col_off, window.row_off, window.width, window.height))
    return (detector.cache_key, raster.fingerprint, placement, tile.size)


def _encode_reads(
    reads: list[tuple[Tile, np.ndarray, np.ndarray]],
    detector: TileDetector,
    raster: ReferenceRaster,
    cache: MutableMapping | None,
) -> Iterator[tuple[Tile, EncodedTile]]:
    if not reads:
        return
    encodings = detector.encode_tiles(np.stack([rgb for _, rgb, _ in reads]))
    for (tile, _, valid), encoding in zip(reads, encodings):
        encoded = EncodedTile(encoding, valid)
        if cache is not None:
            cache[_tile_key(detector, raster, tile)] = encoded
        yield tile, encoded


def encoded_tiles(
    raster: ReferenceRaster,
    tiles: Iterable[Tile],
    detector: TileDetector,
    batch_size: int,
    cache: MutableMapping | None = None,
) -> Iterator[tuple[Tile, EncodedTile | None]]:
    """Every tile with its encoding, or None for a tile without data.

    Tiles found in ``cache`` are neither read nor encoded; the others are read
    one at a time and encoded ``batch_size`` at a time (then cached), so at
    most a batch of tile images is in memory. Tiles may come out of order.
    """
    reads: list[tuple[Tile, np.ndarray, np.ndarray]] = []
    for tile in tiles:
        if cache is not None and (cached := cache.get(_tile_key(detector, raster, tile))) is not None:
            yield tile, cached
            continue
        read = next(iter_tiles(raster, [tile]), None)
        if read is None:
            yield tile, None
            continue
        reads.append(read)
        if len(reads) == batch_size:
            yield from _encode_reads(reads, detector, raster, cache)
            reads = []
    yield from _encode_reads(reads, detector, raster, cache)


def _centred_on_data(boxes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(K,) bool: which (K, 4) tile-pixel boxes have their centre on a valid pixel (not padding or nodata)."""
    height, width = valid.shape
    cols = np.clip(np.floor((boxes[:, 0] + boxes[:, 2]) / 2), 0, width - 1).astype(int)
    rows = np.clip(np.floor((boxes[:, 1] + boxes[:, 3]) / 2), 0, height - 1).astype(int)
    return valid[rows, cols]


def _cut_by_tile(boxes: np.ndarray, size: int) -> np.ndarray:
    """(K,) bool: which (K, 4) tile-pixel boxes reach a side of their size x size tile."""
    return (boxes[:, :2] <= TILE_EDGE_MARGIN_PX).any(axis=1) | (boxes[:, 2:] >= size - TILE_EDGE_MARGIN_PX).any(axis=1)


def merge_detections(boxes: np.ndarray, scores: np.ndarray, cut: np.ndarray, top_k: int) -> list[Detection]:
    """One detection per object, best score first, at most ``top_k``, ranked from 1.

    ``boxes`` (N, 4) are in full-raster pixels, ``scores`` (N,), ``cut`` (N,)
    flags boxes that reach a side of their tile. Overlap is measured as
    intersection over the smaller box, so the part of an object that one tile
    cut at its side merges with the whole object a neighbouring tile saw.
    Within such a group an uncut box is kept over a cut one whatever the
    scores, since only it shows the whole object.
    """
    if len(boxes) == 0:
        return []
    order = np.lexsort((-scores, cut))
    priority = np.empty(len(order))
    priority[order] = -np.arange(len(order), dtype=np.float64)
    keep = nms(boxes, priority, MERGE_THRESHOLD, match="ios")
    keep = keep[np.argsort(-scores[keep], kind="stable")][:top_k]
    return [
        Detection(box_px=tuple(float(v) for v in boxes[i]), score=float(scores[i]), rank=rank)
        for rank, i in enumerate(keep, start=1)
    ]


def scan(
    raster: ReferenceRaster,
    tiles: Sequence[Tile],
    detector: TileDetector,
    query: Any,
    *,
    top_k: int,
    batch_size: int,
    cache: MutableMapping | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Detection], int]:
    """Run ``detector`` over ``tiles`` against ``query``; the merged top-k detections and the tiles with data.

    A hit centred on padding or nodata is dropped: there is nothing there to
    find. ``on_progress(done, total)`` is called as tiles are finished.
    """
    boxes, scores, cut = [], [], []
    done = scanned = 0
    for group in _batched(encoded_tiles(raster, tiles, detector, batch_size, cache), batch_size):
        with_data = [(tile, encoded) for tile, encoded in group if encoded is not None]
        if with_data:
            found = detector.detect(query, [encoded.encoding for _, encoded in with_data], top_k)
            for (tile, encoded), (tile_boxes, tile_scores) in zip(with_data, found):
                tile_boxes = np.asarray(tile_boxes, dtype=np.float64).reshape(-1, 4)
                on_data = _centred_on_data(tile_boxes, encoded.valid)
                boxes.append(tile_box_to_raster(tile, tile_boxes[on_data]))
                scores.append(np.asarray(tile_scores, dtype=np.float64).reshape(-1)[on_data])
                cut.append(_cut_by_tile(tile_boxes[on_data], tile.size))
        scanned += len(with_data)
        done += len(group)
        release_free_memory()
        if on_progress:
            on_progress(done, len(tiles))
    if not boxes:
        return [], scanned
    return merge_detections(np.concatenate(boxes), np.concatenate(scores), np.concatenate(cut), top_k), scanned


def locate(
    photo: str | Path,
    click_xy: tuple[float, float],
    raster_path: str | Path,
    detector: TileDetector,
    *,
    bands: Sequence[int] | None = None,
    gsd_m: float | None = None,
    tile_overlap: float = 0.25,
    batch_size: int = 4,
    top_k: int = 1,
    search: SearchArea = SearchArea(),
    pose: PhotoPose | None = None,
    snap_tiles: bool = False,
    max_tiles: int | None = DEFAULT_MAX_TILES,
    verify: bool = False,
    verifiers: Sequence[MatchDetector] | None = None,
    cache: MutableMapping | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> LocateResult:
    """Find the object clicked at ``click_xy`` (x, y pixels, as displayed) on ``photo`` in the raster.

    ``bands`` picks the raster's red, green, blue (or one grey) bands;
    ``gsd_m`` overrides the detector's ground metres per tile pixel; tiles
    overlap by at least ``tile_overlap`` of a tile and go through the
    detector ``batch_size`` at a time. ``pose`` replaces the photo's own
    EXIF/XMP position for the GPS search circle. ``cache`` (any mutable
    mapping) keeps tile encodings for later calls; without one nothing
    outlives the call, so memory stays flat however large the raster. With
    ``snap_tiles`` the tiles come from one raster-wide grid instead of being
    fitted to the search window, so calls whose search areas overlap share
    tiles, and with them cached encodings. A search needing more than
    ``max_tiles`` tiles is refused (UsageError) before any is read. With
    ``verify`` every hit is checked by the matcher (:mod:`smgeo_cli.verify`;
    ``verifiers`` tried in turn, else the default ones) and its features
    carry ``verified``, ``verify_inliers`` and ``verify_distance_m``. The
    photo's heading and ground sample distance (``photo_hints``) go to the
    detector.

    Raises InputFileError for unreadable files, GeoreferenceError for a
    raster without georeferencing or a search area off the raster,
    UsageError for a click off the photo or bad options, NoDataError when
    the search area holds no valid pixel.
    """
    if top_k < 1 or batch_size < 1:
        raise UsageError(f"top-k and batch size must be at least 1, got {top_k} and {batch_size}")
    start = time.perf_counter()
    photo, raster_path = Path(photo), Path(raster_path)
    click_xy = (float(click_xy[0]), float(click_xy[1]))
    photo_rgb = read_rgb(photo)
    photo_size = (photo_rgb.shape[1], photo_rgb.shape[0])
    check_click(click_xy, photo_size, photo)
    model_gsd = detector.gsd_m if gsd_m is None else gsd_m
    with read_env(), open_reference(raster_path, bands) as raster:
        area = search_window(raster, photo, search, pose)
        if snap_tiles:
            raster_size = (raster.width, raster.height)
            tiles = plan_grid_tiles(
                area.window, raster_size, raster.gsd_m, model_gsd, detector.tile_size, tile_overlap, max_tiles
            )
        else:
            tiles = plan_tiles(area.window, raster.gsd_m, model_gsd, detector.tile_size, tile_overlap, max_tiles)
        hints = photo_hints(photo, photo_size, pose)
        query_start = time.perf_counter()
        query = detector.encode_query(photo_rgb, click_xy, heading_deg=hints.heading_deg, zoom=hints.zoom(model_gsd))
        scan_start = time.perf_counter()
        detections, scanned = scan(
            raster, tiles, detector, query, top_k=top_k, batch_size=batch_size, cache=cache, on_progress=on_progress
        )
        if scanned == 0 and has_valid_pixels(raster, area.window):
            window = area.window
            raise NoDataError(
                f"the search area ({area.kind}) of raster {raster_path} is {window.width:.4g} x {window.height:.4g} "
                f"pixels: it holds data, but less than a whole tile pixel at {model_gsd:g} m; "
                "search a larger raster or area, or give a finer --gsd"
            )
        if scanned == 0:
            raise NoDataError(
                f"no valid pixels in the search area ({area.kind}) of raster {raster_path}: "
                "it is all nodata or masked there; widen the area or check the raster's nodata value"
            )
        scan_end = time.perf_counter()
        checks = verify_hits(raster, detections, photo_rgb, click_xy, verifiers, hints) if verify else []
        extras = [check.properties() for check in checks] or [None] * len(detections)
        features = [
            make_feature(raster, d, query=str(photo), click=click_xy, model=detector.name, extra=extra)
            for d, extra in zip(detections, extras)
        ]
        crs = raster.crs.to_string()
    return LocateResult(
        photo=photo,
        click=click_xy,
        photo_size=photo_size,
        raster_path=raster_path,
        raster_crs=crs,
        model=detector.name,
        model_gsd_m=model_gsd,
        search=area,
        tiles_planned=len(tiles),
        tiles_scanned=scanned,
        detections=detections,
        features=features,
        timings_s={
            "query": scan_start - query_start,
            "scan": scan_end - scan_start,
            "total": time.perf_counter() - start,
        },
    )


def locate_first_found(
    photo: str | Path,
    click_xy: tuple[float, float],
    raster_path: str | Path,
    detectors: Sequence[TileDetector],
    **options: Any,
) -> LocateResult:
    """:func:`locate` with each of ``detectors`` in turn until one has a hit; the last one answers regardless.

    ``--method auto`` passes the matcher, then the model: a verified
    homography fit is the better answer where one exists (same sensor,
    shared texture), and the model's best guess stands where matching finds
    none (other seasons, sensors, strong perspective). The result's
    ``model`` names the detector that answered. The matchers among
    ``detectors`` (SIFT, then learned features with ``--features
    sift+xfeat``) also check the hits under ``verify``, so the photo is
    described once.
    """
    if not detectors:
        raise UsageError("no detector to locate with")
    matchers = [detector for detector in detectors if isinstance(detector, MatchDetector)]
    if matchers:
        options.setdefault("verifiers", matchers)
    for detector in detectors[:-1]:
        result = locate(photo, click_xy, raster_path, detector, **options)
        if result.detections:
            return result
    return locate(photo, click_xy, raster_path, detectors[-1], **options)
