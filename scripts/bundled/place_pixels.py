"""Give plain images (no georeference) a nominal ground grid so ``smgeo synth`` can cut them.

Each image is written as a GeoTIFF in one projected CRS at the pixel size
given, placed on its own patch of ground far from the others (so no two are
taken for dates of one place). The positions are invented: only the pixel
size matters to synth. Used for the Dubai tiles of the bundled model, whose
source gives no georeference.

    python scripts/bundled/place_pixels.py IMAGE... --out DIR --gsd 0.7 --epsg 32640
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

# Images sit this far apart, metres: wider than any image here.
SPACING_M = 20_000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gsd", type=float, required=True, help="assumed metres per pixel")
    parser.add_argument("--epsg", type=int, required=True, help="a projected CRS in metres for the region")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(sorted(args.images)):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        transform = from_origin(200_000.0 + index * SPACING_M, 3_000_000.0, args.gsd, args.gsd)
        profile = {
            "driver": "GTiff", "width": pixels.shape[1], "height": pixels.shape[0], "count": 3, "dtype": "uint8",
            "crs": f"EPSG:{args.epsg}", "transform": transform, "compress": "deflate",
        }
        with rasterio.open(args.out / f"{path.stem}.tif", "w", **profile) as dataset:
            dataset.write(np.moveaxis(pixels, -1, 0))
    print(f"{len(args.images)} images placed at {args.gsd} m/px in EPSG:{args.epsg} under {args.out}")


if __name__ == "__main__":
    main()
