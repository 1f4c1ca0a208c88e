"""Photos as displayed, in any pixel format; oversized files refused before their pixels are decoded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from smgeo_cli.errors import InputFileError
from smgeo_cli.images import MAX_PHOTO_PIXELS, read_rgb
from smgeo_cli.locate import check_click


def test_16_bit_greyscale_photo_is_stretched_not_white(tmp_path):
    # A thermal-like 16-bit frame: values 1000-5000 (all of them above 255, which Pillow's RGB conversion clips).
    values = np.linspace(1000, 5000, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "thermal.tif")
    rgb = read_rgb(tmp_path / "thermal.tif")
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    # The 2nd to 98th percentile spans the bytes: dark at one end, bright at the other, in order.
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 100 < rgb[24, 32, 0] < 160
    assert (np.diff(rgb[..., 0].ravel().astype(int)) >= 0).all()


def test_float_photo_with_nan_reads_and_nan_is_dark(tmp_path):
    values = np.tile(np.linspace(-3.0, 7.0, 40, dtype=np.float32), (30, 1))
    values[5, 5] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif")
    rgb = read_rgb(tmp_path / "float.tif")
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and rgb[5, 5, 0] == 0


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "P", "1", "CMYK", "RGBA"])
def test_other_modes_become_rgb_strip_by_strip(tmp_path, mode, monkeypatch):
    monkeypatch.setattr("smgeo_cli.images._STRIP_PIXELS", 45)  # strips of two rows, the last one of one row
    pixels = np.random.default_rng(0).integers(0, 255, (11, 20, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"photo{suffix}")
    rgb = read_rgb(tmp_path / f"photo{suffix}")
    assert rgb.shape == (11, 20, 3) and rgb.dtype == np.uint8
    with Image.open(tmp_path / f"photo{suffix}") as written:
        assert np.array_equal(rgb, np.asarray(written.convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_reads_as_pillow_displays_it(tmp_path, orientation):
    pixels = np.random.default_rng(orientation).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "photo.png", exif=exif)
    with Image.open(tmp_path / "photo.png") as image:
        displayed = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    rgb = read_rgb(tmp_path / "photo.png")
    assert np.array_equal(rgb, displayed)
    # A click is checked against the photo as displayed: a 30 x 50 photo turned on its side is 30 wide.
    check_click((rgb.shape[1] - 1, rgb.shape[0] - 1), (rgb.shape[1], rgb.shape[0]), "photo.png")


def test_photo_declaring_more_pixels_than_allowed_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr("smgeo_cli.images.MAX_PHOTO_PIXELS", 300 * 200 - 1)
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self))
    with pytest.raises(InputFileError, match=r"big\.png declares 300 x 200 pixels .* decompression bomb"):
        read_rgb(tmp_path / "big.png")
    assert not decoded
    assert MAX_PHOTO_PIXELS >= 150_000_000  # the largest aerial cameras still read
