"""Tile-encoding reuse in `smgeo batch`: each tile is encoded once per run, and what that saves.

What it measures: a flight of QUERIES clicks (two per photo) over one
generated raster (the ground of ``locate_memory.py``, UTM, 0.5 m pixels), each
photo a crop of the raster with its centre's GPS in EXIF, searched within
RADIUS metres. With the batch's shared cache (:class:`smgeo_cli.batch.TileCache`
on one raster-wide tile grid) it counts encoder calls per distinct tile, which
must be 1; then the same queries go through `locate` one by one with no cache,
as a script calling `smgeo locate` per photo would, and it reports the time
ratio. The model is an untrained SMGeo from a config (default ``smgeo-nano``):
only its cost matters here. About four minutes on 2 CPU cores, nearly all
of it the uncached pass.

    python benchmarks/batch_cache.py [--config smgeo-nano] [--queries 24] [--radius 200] [--size 2048]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from PIL import ExifTags, Image
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).parent))
from locate_memory import write_raster  # noqa: E402  (the benchmarks share one ground generator)

from smgeo_cli.batch import Query, TileCache, run_batch  # noqa: E402
from smgeo_cli.device import set_cpu_threads  # noqa: E402
from smgeo_cli.geo.coords import pixel_to_lonlat  # noqa: E402
from smgeo_cli.geo.flightlog import PhotoPose  # noqa: E402
from smgeo_cli.locate import SearchArea, SMGeoDetector, locate  # noqa: E402
from smgeo_cli.model.config import resolve_config  # noqa: E402
from smgeo_cli.model.smgeo import SMGeo  # noqa: E402

CROP_PX = 400  # raster pixels a photo covers (200 m)
PHOTO_PX = 320


class CountingDetector(SMGeoDetector):
    """SMGeo that counts the tiles it encodes."""

    encoded = 0

    def encode_tiles(self, tiles_rgb):
        self.encoded += len(tiles_rgb)
        return super().encode_tiles(tiles_rgb)


def make_flight(raster: Path, folder: Path, count: int) -> list[Query]:
    """``count`` queries, two per photo; photos on a lawnmower path over the raster's middle, overlapping."""
    queries = []
    with rasterio.open(raster) as dataset:
        photos = (count + 1) // 2
        span = dataset.width - 2 * CROP_PX
        for i in range(photos):
            col = int(CROP_PX // 2 + span * ((i % 4) / 3))
            row = int(CROP_PX // 2 + span * ((i // 4) / max(1, (photos - 1) // 4)))
            crop = dataset.read(window=Window(col, row, CROP_PX, CROP_PX), out_shape=(3, PHOTO_PX, PHOTO_PX))
            lon, lat = (
                float(v[0])
                for v in pixel_to_lonlat(dataset.crs, dataset.transform, [col + CROP_PX / 2], [row + CROP_PX / 2])
            )
            exif = Image.Exif()
            exif.get_ifd(ExifTags.IFD.GPSInfo).update(
                {ExifTags.GPS.GPSLatitude: (lat, 0.0, 0.0), ExifTags.GPS.GPSLatitudeRef: "N",
                 ExifTags.GPS.GPSLongitude: (lon, 0.0, 0.0), ExifTags.GPS.GPSLongitudeRef: "E"}
            )  # fmt: skip
            photo = folder / f"photo_{i:03d}.jpg"
            Image.fromarray(np.transpose(crop, (1, 2, 0))).save(photo, exif=exif)
            pose = PhotoPose(lat, lon, source="exif")
            for k, click in enumerate(((100.0, 120.0), (220.0, 200.0))[: count - 2 * i]):
                index = len(queries)
                queries.append(Query(f"{photo.name}#{k}", index, photo, click, None, pose, f"bench:{index}"))
    return queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="smgeo-nano", help="Model config (name under models/ or config.json).")
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--radius", type=float, default=200.0, help="Search radius around each photo, metres.")
    parser.add_argument("--size", type=int, default=2048, help="Raster side in pixels (0.5 m).")
    args = parser.parse_args()
    set_cpu_threads()
    torch.manual_seed(0)
    search = SearchArea(radius_m=args.radius)
    with tempfile.TemporaryDirectory(prefix="smgeo-batch-cache-") as folder:
        folder = Path(folder)
        raster = write_raster(folder / "ref.tif", args.size)
        queries = make_flight(raster, folder, args.queries)

        detector = CountingDetector(SMGeo(resolve_config(args.config)))
        cache = TileCache(max_bytes=1 << 40)
        start = time.perf_counter()
        stats = run_batch(queries, raster, [detector], folder / "flight.geojson", cache=cache, search=search)
        cached_s = time.perf_counter() - start
        assert stats.done == len(queries), "a query failed"
        calls_per_tile = detector.encoded / len(cache)
        cached_encoded = detector.encoded

        detector.encoded = 0
        start = time.perf_counter()
        for query in queries:
            locate(query.photo, query.click, raster, detector, search=search, pose=query.pose, snap_tiles=True)
        uncached_s = time.perf_counter() - start

    report = {
        "queries": len(queries),
        "distinct_tiles": len(cache),
        "encoder_calls_with_cache": cached_encoded,
        "encoder_calls_per_tile": calls_per_tile,
        "encoder_calls_without_cache": detector.encoded,
        "seconds_with_cache": round(cached_s, 2),
        "seconds_without_cache": round(uncached_s, 2),
        "time_ratio_cache_vs_none": round(cached_s / uncached_s, 3),
    }
    print(json.dumps(report, indent=1))
    return 0 if calls_per_tile == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
