"""What a click costs the matcher: the first click on a new photo over 1 km^2, and a second click on it.

Builds a 2000 x 2000 GeoTIFF at 0.5 m (1 km^2: the test aerial at 0.5 m,
repeated 4 x 4) and a 4000 x 3000 drone photo of part of it (turned 30
degrees, 8x finer than the raster), then runs ``locate`` over the whole
raster (9 tiles of 1024 px) as ``smgeo batch`` does: a first click with new
matchers and an empty tile cache, then a click elsewhere on the same photo
with the same matchers and cache (tiles and the photo's description and
fits reused). For each ``--features`` choice, with the photo's heading
unknown (the learned features try ``--headings`` turns) and known. Prints
the median of ``--repeats`` runs.

    python benchmarks/match_query_cost.py [--repeats 3] [--features sift,xfeat,sift+xfeat]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.transform import from_origin

from smgeo_cli.batch import TileCache
from smgeo_cli.device import set_cpu_threads
from smgeo_cli.geo.flightlog import PhotoPose
from smgeo_cli.images import read_rgb
from smgeo_cli.locate import SearchArea, locate_first_found
from smgeo_cli.matching.detector import matchers

AERIAL = Path(__file__).parent.parent / "tests" / "data" / "geo" / "test_tiled.tif"
PHOTO_SIZE = (4000, 3000)
TURN_DEG = 30.0


def write_scene(folder: Path) -> tuple[Path, Path]:
    """The 1 km^2 raster at 0.5 m and a 4000 x 3000 photo of the ground around its centre."""
    with rasterio.open(AERIAL) as src:
        aerial = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    half = cv2.resize(aerial, (500, 500), interpolation=cv2.INTER_AREA)  # 0.25 m -> 0.5 m
    ground = np.tile(half, (4, 4, 1))
    raster = folder / "area.tif"
    profile = dict(driver="GTiff", width=2000, height=2000, count=3, dtype="uint8", crs="EPSG:28992",
                   transform=from_origin(100000.0, 400000.0, 0.5, 0.5), tiled=True, compress="deflate")
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(np.moveaxis(ground, -1, 0))
    turn = np.vstack([cv2.getRotationMatrix2D((1130.0, 870.0), TURN_DEG, 8.0), [0.0, 0.0, 1.0]])
    shift = np.array([[1.0, 0.0, PHOTO_SIZE[0] / 2 - 1130.0], [0.0, 1.0, PHOTO_SIZE[1] / 2 - 870.0], [0.0, 0.0, 1.0]])
    photo = cv2.warpPerspective(ground, shift @ turn, PHOTO_SIZE, flags=cv2.INTER_LINEAR)
    cv2.imwrite(str(folder / "photo.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return raster, folder / "photo.jpg"


def clicks_cost(raster: Path, photo: Path, features: str, heading: float | None, headings: int) -> tuple[float, float]:
    """Seconds of a first click (new matchers, empty cache) and of a second click on the same photo."""
    chain = matchers(features, headings=headings)
    # The heading reaches the matcher as a flight log's would; the position is not used (no GPS search).
    pose = None if heading is None else PhotoPose(lat=52.0, lon=5.0, yaw_deg=heading)
    cache = TileCache()
    search = SearchArea(use_gps=False)
    times = []
    for click in ((2000.0, 1500.0), (2600.0, 1100.0)):
        start = time.perf_counter()
        locate_first_found(photo, click, raster, chain, search=search, snap_tiles=True, cache=cache, pose=pose)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--features", default="sift,xfeat,sift+xfeat")
    parser.add_argument("--headings", type=int, default=4)
    args = parser.parse_args()
    set_cpu_threads()
    with tempfile.TemporaryDirectory() as folder:
        raster, photo = write_scene(Path(folder))
        print(f"raster 2000 x 2000 at 0.5 m (1 km^2, 9 tiles of 1024 px); photo {read_rgb(photo).shape[1]} x 3000")
        print("| features | photo heading | first click (s) | second click (s) |")
        print("|---|---|---|---|")
        for features in args.features.split(","):
            for heading in (None, TURN_DEG):
                runs = [clicks_cost(raster, photo, features, heading, args.headings) for _ in range(args.repeats)]
                first = statistics.median(r[0] for r in runs)
                second = statistics.median(r[1] for r in runs)
                label = "unknown" if heading is None else "known"
                print(f"| {features} | {label} | {first:.2f} | {second:.2f} |", flush=True)


if __name__ == "__main__":
    main()
