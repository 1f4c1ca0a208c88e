"""Peak memory of `locate` over a 2k x 2k and a 16k x 16k GeoTIFF: it must not grow with the raster.

What it measures: the peak resident set size (``ru_maxrss``) of a fresh
Python process that loads the model and runs the whole locate pipeline
(search window, tiling, windowed reads, batched model passes, merging, GeoJSON
features) over every tile of the raster; then the ratio of the 16k figure to
the 2k one, which should stay at or below 1.2. Both rasters are generated in a
temporary folder as tiled, deflate-compressed RGB GeoTIFFs (UTM, 0.5 m pixels,
smooth ground with buildings-like blocks) written strip by strip, so the
generator needs little memory either. The model is an untrained SMGeo from a
config (default ``smgeo-nano``: 512 px tiles at 0.5 m, so 36 tiles for 2k and
1849 for 16k): its accuracy does not matter here, only its memory. The time per
run is printed too. About three minutes on 2 idle CPU cores.

    python benchmarks/locate_memory.py [--config smgeo-nano] [--gsd M] [--sizes 2048 16384]
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
from PIL import Image
from rasterio.transform import from_origin
from rasterio.windows import Window

LIMIT = 1.2
PIXEL_M = 0.5
STRIP_ROWS = 512


def _strip(row0: int, rows: int, width: int) -> np.ndarray:
    """(3, rows, width) uint8 ground: slow colour gradients plus a grid of bright 'roofs'."""
    y, x = np.mgrid[row0 : row0 + rows, 0:width].astype(np.float32)
    base = 90 + 40 * np.sin(x / 700.0) * np.cos(y / 900.0)
    roofs = ((x % 160) < 40) & ((y % 220) < 30)
    bands = [base + 20 * np.sin(y / 300.0), base, base - 20 * np.cos(x / 400.0)]
    data = np.stack([np.where(roofs, 220.0, band) for band in bands])
    return np.clip(data, 0, 255).astype(np.uint8)


def write_raster(path: Path, size: int) -> Path:
    """A size x size tiled RGB GeoTIFF in UTM 33N, written one strip of blocks at a time."""
    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500_000.0, 4_983_000.0, PIXEL_M, PIXEL_M), tiled=True,
        blockxsize=512, blockysize=512, compress="deflate", predictor=2, photometric="RGB",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        for row0 in range(0, size, STRIP_ROWS):
            rows = min(STRIP_ROWS, size - row0)
            dataset.write(_strip(row0, rows, size), window=Window(0, row0, size, rows))
    return path


def run_child(raster: Path, config: str, gsd: float | None, photo: Path) -> None:
    """In a fresh process: locate over the whole raster; print peak RSS and timings as JSON."""
    import torch

    from smgeo_cli.device import set_cpu_threads
    from smgeo_cli.locate import SearchArea, SMGeoDetector, locate
    from smgeo_cli.model.config import resolve_config
    from smgeo_cli.model.smgeo import SMGeo

    set_cpu_threads()
    torch.manual_seed(0)
    detector = SMGeoDetector(SMGeo(resolve_config(config)))
    start = time.perf_counter()
    result = locate(photo, (100.0, 80.0), raster, detector, gsd_m=gsd, search=SearchArea(use_gps=False))
    report = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        "tiles": result.tiles_scanned,
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(report))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="smgeo-nano", help="Model config (name under models/ or config.json).")
    parser.add_argument("--gsd", type=float, default=None, help="Metres per model pixel (default: the model's).")
    parser.add_argument("--sizes", type=int, nargs=2, default=(2048, 16384), metavar=("SMALL", "LARGE"))
    parser.add_argument("--child", type=Path, nargs=2, metavar=("RASTER", "PHOTO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], args.config, args.gsd, args.child[1])
        return 0

    with tempfile.TemporaryDirectory(prefix="smgeo-locate-memory-") as folder:
        folder = Path(folder)
        photo = folder / "photo.jpg"
        Image.fromarray(np.transpose(_strip(0, 240, 320), (1, 2, 0))).save(photo)
        reports = {}
        for size in args.sizes:
            start = time.perf_counter()
            raster = write_raster(folder / f"ref_{size}.tif", size)
            made = time.perf_counter() - start
            command = [sys.executable, __file__, "--config", args.config, "--child", str(raster), str(photo)]
            if args.gsd is not None:
                command += ["--gsd", str(args.gsd)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            reports[size] = json.loads(done.stdout.strip().splitlines()[-1])
            mb = raster.stat().st_size / 2**20
            r = reports[size]
            print(
                f"{size:>6} x {size:<6} raster {mb:7.1f} MB on disk (written in {made:5.1f} s): "
                f"{r['tiles']:4d} tiles in {r['seconds']:6.1f} s, peak RSS {r['peak_rss_mb']:7.1f} MB"
            )
    small, large = (reports[s]["peak_rss_mb"] for s in args.sizes)
    ratio = large / small
    verdict = "ok" if ratio <= LIMIT else f"FAIL: above {LIMIT}"
    print(f"peak RSS ratio {args.sizes[1]} / {args.sizes[0]}: {ratio:.3f} ({verdict})")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
