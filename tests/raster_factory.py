"""Small GeoTIFFs for the geo tests, written with rasterio into a test's tmp_path."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine, from_origin

UTM_33N = "EPSG:32633"
# 0.5 m pixels at the central meridian of UTM zone 33N, 45 degrees north.
UTM_TRANSFORM = from_origin(500_000.0, 4_983_000.0, 0.5, 0.5)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM_33N,
    transform: Affine | None = UTM_TRANSFORM,
    colorinterp: Sequence[ColorInterp] | None = None,
    **profile,
) -> Path:
    """Write ``data`` (bands, rows, cols) or (rows, cols) as a GeoTIFF; ``profile`` adds creation options."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=data.shape[2],
            height=data.shape[1],
            count=data.shape[0],
            dtype=data.dtype,
            crs=crs,
            transform=transform,
            **profile,
        ) as dataset:
            dataset.write(data)
            if colorinterp is not None:
                dataset.colorinterp = colorinterp
    return path


def write_photo(
    path: Path, size: tuple[int, int] = (80, 60), latlon: tuple[float, float] | None = None, focal_35mm: int | None = None
) -> Path:
    """A noise photo of ``size`` (width, height); ``latlon`` in degrees and ``focal_35mm`` go into its EXIF."""
    from PIL import ExifTags, Image

    exif = Image.Exif()
    if latlon:
        lat, lon = latlon
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(
            {
                ExifTags.GPS.GPSLatitude: (abs(lat), 0.0, 0.0),
                ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
                ExifTags.GPS.GPSLongitude: (abs(lon), 0.0, 0.0),
                ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
            }
        )
    if focal_35mm is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = focal_35mm
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, exif=exif)
    return path


def write_bomb_png(path: Path, side: int = 50_000) -> Path:
    """A 1 x 1 PNG whose header declares side x side pixels: a few dozen bytes claiming 7.5 GB of RGB."""
    import struct
    import zlib

    from PIL import Image

    Image.new("RGB", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    # After the 8-byte signature: the IHDR chunk's length (4), type (4), width (4), height (4), 5 more bytes, CRC.
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path
