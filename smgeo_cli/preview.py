"""The ``--preview`` picture: the photo with the click beside the reference around the top hit."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw
from rasterio.windows import Window

from smgeo_cli.geo.raster import open_reference, read_env, read_window
from smgeo_cli.images import read_rgb
from smgeo_cli.io import replace_atomically
from smgeo_cli.locate import LocateResult

# Height in pixels of each half of the preview image.
PREVIEW_HEIGHT = 512
# The preview's reference crop spans this many times the hit's longer side (at least PREVIEW_MIN_CROP_PX).
PREVIEW_CONTEXT = 4.0
PREVIEW_MIN_CROP_PX = 64.0


def _photo_panel(photo: Path, click: tuple[float, float]) -> Image.Image:
    """The photo scaled to PREVIEW_HEIGHT with the click marked by a ring and a cross."""
    image = Image.fromarray(read_rgb(photo))
    scale = PREVIEW_HEIGHT / image.height
    image = image.resize((max(1, round(image.width * scale)), PREVIEW_HEIGHT), Image.Resampling.LANCZOS)
    x, y = click[0] * scale, click[1] * scale
    draw = ImageDraw.Draw(image)
    for colour, width in (("black", 5), ("yellow", 2)):
        draw.ellipse((x - 12, y - 12, x + 12, y + 12), outline=colour, width=width)
        draw.line((x - 20, y, x + 20, y), fill=colour, width=width - 1)
        draw.line((x, y - 20, x, y + 20), fill=colour, width=width - 1)
    return image


def _reference_panel(result: LocateResult, bands: tuple[int, ...] | None) -> Image.Image:
    """The raster around the top hit, box and score drawn; a grey panel saying so when nothing was found."""
    if not result.detections:
        image = Image.new("RGB", (PREVIEW_HEIGHT, PREVIEW_HEIGHT), "grey")
        ImageDraw.Draw(image).text((10, 10), "no hit", fill="white")
        return image
    top = result.detections[0]
    x1, y1, x2, y2 = top.box_px
    side = max(PREVIEW_MIN_CROP_PX, PREVIEW_CONTEXT * max(x2 - x1, y2 - y1))
    window = Window((x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side, side)
    with read_env(), open_reference(result.raster_path, bands) as raster:
        rgb, _ = read_window(raster, window, (PREVIEW_HEIGHT, PREVIEW_HEIGHT))
    image = Image.fromarray(rgb)
    scale = PREVIEW_HEIGHT / side
    box = [(v - origin) * scale for v, origin in zip(top.box_px, (window.col_off, window.row_off) * 2)]
    draw = ImageDraw.Draw(image)
    draw.rectangle(box, outline="black", width=5)
    draw.rectangle(box, outline="red", width=2)
    label = f"#{top.rank} score {top.score:.3f}"
    left, upper, right, lower = draw.textbbox((8, 6), label)
    draw.rectangle((left - 4, upper - 3, right + 4, lower + 3), fill="black")
    draw.text((8, 6), label, fill="white")
    return image


def write_preview(path: Path, result: LocateResult, bands: tuple[int, ...] | None) -> None:
    """A PNG: the photo with the click, beside the reference crop around the top hit with its box and score."""
    left, right = _photo_panel(result.photo, result.click), _reference_panel(result, bands)
    canvas = Image.new("RGB", (left.width + 8 + right.width, PREVIEW_HEIGHT), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 8, 0))
    with replace_atomically(path) as tmp:
        canvas.save(tmp, format="PNG")
