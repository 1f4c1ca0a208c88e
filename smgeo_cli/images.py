"""Opening photos safely and reading them as displayed, in any pixel format, as RGB bytes.

A photo's header is checked before its pixels are decoded: a file declaring
more than ``MAX_PHOTO_PIXELS`` (a damaged file, or a decompression bomb: a
few kilobytes of PNG that decode to gigabytes) is refused. 16-bit and float
images (thermal and multispectral cameras, GIS exports) are stretched from
their 2nd to 98th percentile, as rasters are, instead of being clipped to
white. Both the photo readers and the metadata reader open files here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike

import numpy as np
from PIL import Image

from smgeo_cli.errors import InputFileError

# The largest aerial cameras make 150-megapixel photos.
MAX_PHOTO_PIXELS = 150_000_000
STRETCH_PERCENTILES = (2.0, 98.0)
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the numpy view that shows the image as a viewer does (as PIL's exif_transpose).
_AS_DISPLAYED = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
# Pixels converted at a time when a photo is turned into an array.
_STRIP_PIXELS = 1 << 22
# Modes whose values are not bytes: Pillow's convert("RGB") would clip them (a 16-bit photo reads all white).
_WIDE_MODES = ("I", "F")


@dataclass(frozen=True)
class Stretch:
    """Per-band linear map of values onto bytes: ``low`` -> 0, ``high`` -> 255, clipped."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def fit(cls, values: np.ndarray) -> Stretch:
        """Each band's 2nd to 98th percentile of ``values`` (bands, N), the valid values only."""
        low, high = np.percentile(values.astype(np.float64), STRETCH_PERCENTILES, axis=1)
        high = np.where(high > low, high, low + 1.0)
        return cls(low=tuple(float(v) for v in low), high=tuple(float(v) for v in high))

    def apply(self, bands: np.ndarray) -> np.ndarray:
        """(bands, H, W) values of any dtype to (bands, H, W) uint8; NaN becomes 0."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        scaled = (bands.astype(np.float32) - low) * (255.0 / (high - low))
        return np.rint(np.clip(np.nan_to_num(scaled), 0.0, 255.0)).astype(np.uint8)


@contextmanager
def open_image(path: str | PathLike[str], what: str = "image") -> Iterator[Image.Image]:
    """The image at ``path``, opened lazily (pixels not yet decoded) once its declared size is checked.

    InputFileError for a missing, unreadable or oversized file; ``what``
    names the file in the message ("photo", "image").
    """
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as err:
        raise InputFileError(f"{what} {path} declares an implausible size ({err}); refused before decoding") from None
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}: cannot read {what} ({err})") from err
    with image:
        pixels = image.width * image.height
        if pixels > MAX_PHOTO_PIXELS:
            raise InputFileError(
                f"{what} {path} declares {image.width} x {image.height} pixels ({pixels / 1e6:.0f} MP), more than "
                f"the {MAX_PHOTO_PIXELS / 1e6:.0f} MP smgeo reads: a damaged file or a decompression bomb "
                "(refused before decoding); shrink it first if it is a real photo"
            )
        yield image


def read_rgb(path: str | PathLike[str]) -> np.ndarray:
    """Read an image file as displayed: EXIF orientation applied, RGB uint8 (H, W, 3).

    Photos are read as a viewer shows them, since that is where a person
    clicks. Greyscale, palette, CMYK and alpha images become RGB; 16-bit and
    float ones are stretched from their 2nd to 98th percentile. Raises
    InputFileError if the file is missing, not a readable image or declares
    more than ``MAX_PHOTO_PIXELS``.
    """
    with open_image(path) as image:
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            rgb = _stretched(np.asarray(image)) if image.mode.startswith(_WIDE_MODES) else _rgb_bytes(image)
        except (OSError, ValueError, SyntaxError) as err:
            raise InputFileError(f"{path}: cannot read image ({err})") from err
    view = _AS_DISPLAYED.get(orientation)
    return np.ascontiguousarray(view(rgb)) if view else rgb


def _rgb_bytes(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 of any byte-valued image, made a strip at a time.

    Converting or exporting the whole image at once (``convert``,
    ``tobytes``) would hold two more copies of its pixels beside Pillow's own:
    2.6 GB for a 140 KB PNG of flat colour.
    """
    width, height = image.size
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        rgb[top : top + rows] = np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"))
    return rgb


def _stretched(values: np.ndarray) -> np.ndarray:
    """(H, W) integer or float values -> (H, W, 3) grey bytes, stretched over the finite values."""
    values = values.astype(np.float32)
    finite = np.isfinite(values)
    stretch = Stretch.fit(values[finite][None]) if finite.any() else Stretch((0.0,), (1.0,))
    grey = stretch.apply(values[None])[0]
    return np.repeat(grey[..., None], 3, axis=2)
