"""Peak memory of `smgeo locate` with a GPS prior on a 50,000 x 50,000 GeoTIFF: it must stay under 2 GiB.

What it measures: a generated RGB GeoTIFF (UTM 33N, 0.5 m pixels, 25 km a
side, tiled and deflate-compressed, so small on disk; written one strip of
blocks at a time by ``locate_memory.write_raster``) and a photo whose EXIF GPS
lies near its middle; then the real command line, `python -m smgeo_cli
locate PHOTO --click X,Y --ref RASTER -o hit.geojson` (``--method auto`` by
default: the matcher, then the bundled model), in a child process. It prints
the raster's size on disk, how long writing it took, the search (tiles
planned and scanned), the run's wall time and its peak resident set size
(``ru_maxrss`` of the child), against the 2 GiB ceiling.

    python benchmarks/large_raster_gps.py [--size 50000] [--method auto] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from locate_memory import PIXEL_M, _strip, write_raster
from PIL import ExifTags, Image

from smgeo_cli.geo.coords import pixel_to_lonlat

CEILING_MB = 2048


def write_gps_photo(path: Path, lon: float, lat: float) -> Path:
    """A 640 x 480 photo of the generated ground, its EXIF GPS at (lon, lat)."""
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {
            ExifTags.GPS.GPSLatitude: (abs(lat), 0.0, 0.0),
            ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
            ExifTags.GPS.GPSLongitude: (abs(lon), 0.0, 0.0),
            ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
        }
    )
    Image.fromarray(np.transpose(_strip(1000, 480, 640), (1, 2, 0))).save(path, exif=exif)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000, help="Raster side in pixels.")
    parser.add_argument("--method", default="auto", help="--method of smgeo locate.")
    parser.add_argument("--keep", type=Path, help="Write the raster here and keep it (default: a temporary folder).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smgeo-large-raster-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        raster = folder / f"ref_{args.size}.tif"
        start = time.perf_counter()
        if not raster.exists():
            write_raster(raster, args.size)
        written = time.perf_counter() - start
        with rasterio.open(raster) as dataset:
            middle = np.array([args.size / 2])
            lon, lat = pixel_to_lonlat(dataset.crs, dataset.transform, middle, middle)
        photo = write_gps_photo(folder / "photo.jpg", float(lon[0]), float(lat[0]))
        command = [sys.executable, "-m", "smgeo_cli", "locate", str(photo), "--click", "320,240", "--ref", str(raster),
                   "--method", args.method, "-o", str(folder / "hit.geojson"), "--json", "-q"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        summary = json.loads(done.stdout)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
        print(
            f"{args.size} x {args.size} raster ({args.size * PIXEL_M / 1000:.0f} km a side): "
            f"{raster.stat().st_size / 2**20:.1f} MB on disk, written in {written:.0f} s"
        )
        print(
            f"locate --method {args.method} with a GPS prior ({summary['search']['kind']}, "
            f"{summary['tiles']['planned']} tiles planned, {summary['tiles']['scanned']} scanned, model "
            f"{summary['model']}): {seconds:.1f} s, peak RSS {peak_mb:.0f} MB "
            f"({'under' if peak_mb < CEILING_MB else 'OVER'} the {CEILING_MB} MB ceiling)"
        )
    return 0 if peak_mb < CEILING_MB else 1


if __name__ == "__main__":
    sys.exit(main())
