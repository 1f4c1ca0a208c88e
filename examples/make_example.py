"""Regenerate the bundled example in examples/data/ from the real imagery in ../shared/data/.

The reference is pan1.tif (Rotterdam, 0.5 m panchromatic, EPSG:32631), copied
unchanged. The drone photos are rendered from ms1.tif, the same ground seen by
another sensor (1 m, 4-band multispectral; bands 3, 2, 1 are red, green, blue),
so a photo never shares pixels with the reference. Each photo is a view of one
object (OBJECTS) through the project's own virtual drone camera
(``drone.camera_homography``, oblique, at a fixed pose) with its degradations
(``drone.degrade``, seeded), saved as a 512 x 512 JPEG.

Ground coordinates for the camera are reference pixels (pixel-edge
convention), so each photo's homography maps reference pixels straight to
photo pixels; truth.csv keeps it with the true box (raster CRS and reference
pixels) and the click, so a result can be checked without this script.

Run by hand from the repository root (deterministic, a few seconds)::

    python examples/make_example.py [--source ../shared/data/imagery]
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rasterio.transform import Affine
from rasterio.windows import Window

from smgeo_cli.data.drone import camera_homography, degrade
from smgeo_cli.data.geometry import apply_homography, warp_square
from smgeo_cli.geo.coords import xy_to_pixel
from smgeo_cli.geo.raster import open_reference, read_window
from smgeo_cli.io import replace_atomically, write_text_atomic

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "imagery"
OUT_DIR = HERE / "data"
REFERENCE = "pan1.tif"
DRONE_SOURCE = "ms1.tif"
DRONE_BANDS = (3, 2, 1)
PHOTO_SIZE = 512
JPEG_QUALITY = 90
# The drone source is enlarged this much and softened before the warp: a drone photo sees the
# ground at a few centimetres, so 1 m source pixels must not show as blocks.
SOURCE_UPSAMPLE = 4
SOURCE_BLUR_PX = 0.5
# A photo's corners must see ground the drone source covers: warp_square would mirror it in otherwise.
CORNER_MARGIN_PX = 2.0


@dataclass(frozen=True)
class ExampleObject:
    """One photo: the object's true box and the click on it (EPSG:32631 metres), and the camera pose.

    ``distance_m`` is from the camera to ``aim`` (the box centre shifted by
    ``aim_shift_m``) along the optical axis; pitch 90 looks straight down,
    heading turns the photo's top clockwise from north.
    """

    photo: str
    label: str
    box: tuple[float, float, float, float]  # minx, miny, maxx, maxy
    click: tuple[float, float]
    pitch_deg: float
    heading_deg: float
    fov_deg: float
    distance_m: float
    aim_shift_m: tuple[float, float]
    seed: int


# Each camera faces the middle of the 300 m scene so that the far side of its oblique view stays on it.
OBJECTS = (
    # The roundabout at the west edge of the park: road ring and island.
    ExampleObject(
        "roundabout.jpg", "roundabout", (593322.292, 5747453.416, 593360.292, 5747492.416), (593341.5, 5747473.0),
        pitch_deg=50.0, heading_deg=60.0, fov_deg=60.0, distance_m=84.0, aim_shift_m=(10.0, 0.0), seed=1,
    ),
    # The large dark-roofed building south-east of the park, with its lower west wing.
    ExampleObject(
        "dark_roof_building.jpg", "dark-roofed building", (593470.292, 5747431.416, 593521.792, 5747472.416),
        (593500.0, 5747456.0),
        pitch_deg=55.0, heading_deg=315.0, fov_deg=55.0, distance_m=110.0, aim_shift_m=(0.0, -10.0), seed=2,
    ),
    # The white-roofed building at the north edge of the park.
    ExampleObject(
        "white_roof_building.jpg", "white-roofed building", (593394.792, 5747587.416, 593420.792, 5747622.416),
        (593406.0, 5747600.0),
        pitch_deg=65.0, heading_deg=165.0, fov_deg=60.0, distance_m=76.0, aim_shift_m=(10.0, -10.0), seed=3,
    ),
    # The lawn east of the park, between footpaths, with one tree in it.
    ExampleObject(
        "lawn.jpg", "lawn", (593482.792, 5747473.416, 593536.292, 5747534.916), (593508.0, 5747500.0),
        pitch_deg=50.0, heading_deg=270.0, fov_deg=60.0, distance_m=118.0, aim_shift_m=(-10.0, 0.0), seed=4,
    ),
)

TRUTH_COLUMNS = (
    "image", "label", "click_x", "click_y", "crs", "minx", "miny", "maxx", "maxy", "x1", "y1", "x2", "y2",
    "pitch_deg", "heading_deg", *(f"h{i}{j}" for i in range(3) for j in range(3)),
)


def _pixel_box(transform: Affine, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A north-up world box as (x1, y1, x2, y2) reference pixels."""
    cols, rows = xy_to_pixel(transform, np.array([box[0], box[2]]), np.array([box[3], box[1]]))
    return float(cols[0]), float(rows[0]), float(cols[1]), float(rows[1])


def _homography(obj: ExampleObject, transform: Affine, gsd_m: float) -> np.ndarray:
    """Reference pixels -> photo pixels for obj's camera pose."""
    aim_x = (obj.box[0] + obj.box[2]) / 2 + obj.aim_shift_m[0]
    aim_y = (obj.box[1] + obj.box[3]) / 2 + obj.aim_shift_m[1]
    aim = np.array(xy_to_pixel(transform, np.array([aim_x]), np.array([aim_y]))).ravel()
    return camera_homography(obj.pitch_deg, obj.heading_deg, obj.fov_deg, obj.distance_m / gsd_m, aim, PHOTO_SIZE)


def render(obj: ExampleObject, source_rgb: np.ndarray, source_to_ref: np.ndarray, homography: np.ndarray,
           ref_size: tuple[int, int]) -> np.ndarray:
    """The degraded (S, S, 3) RGB photo of obj from the drone source (H, W, 3) uint8.

    ``source_to_ref`` maps drone-source pixels to reference pixels; the
    photo's corners must see ground inside both rasters (ref_size is (W, H)).
    """
    corners = np.array([[0, 0], [PHOTO_SIZE, 0], [PHOTO_SIZE, PHOTO_SIZE], [0, PHOTO_SIZE]], dtype=np.float64)
    on_ref = apply_homography(np.linalg.inv(homography), corners)
    on_source = apply_homography(np.linalg.inv(source_to_ref), on_ref)
    on_ref_ok = (on_ref >= CORNER_MARGIN_PX) & (on_ref <= np.array(ref_size) - CORNER_MARGIN_PX)
    on_source_ok = (on_source >= 0) & (on_source <= np.array(source_rgb.shape[1::-1]))
    if not np.all(on_ref_ok & on_source_ok):
        raise SystemExit(f"{obj.photo}: the view runs off the imagery ({on_ref.round(1).tolist()}); change its pose")
    view = warp_square(source_rgb, homography @ source_to_ref, PHOTO_SIZE, cv2.INTER_LINEAR)
    return degrade(view, np.random.default_rng(obj.seed), obj.pitch_deg)


def truth_row(obj: ExampleObject, homography: np.ndarray, transform: Affine, crs: str) -> dict[str, object]:
    """truth.csv's row for obj; raises SystemExit if the object's box is not wholly in view."""
    pixel_box = _pixel_box(transform, obj.box)
    x1, y1, x2, y2 = pixel_box
    seen = apply_homography(homography, np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]))
    click_ref = np.array(xy_to_pixel(transform, np.array(obj.click[:1]), np.array(obj.click[1:]))).T
    click = apply_homography(homography, click_ref)[0]
    if not np.all((seen > 0) & (seen < PHOTO_SIZE)):
        raise SystemExit(f"{obj.photo}: the object's box is not wholly in view ({seen.round(1).tolist()})")
    row: dict[str, object] = {
        "image": obj.photo, "label": obj.label, "click_x": round(float(click[0]), 1),
        "click_y": round(float(click[1]), 1), "crs": crs,
        **dict(zip(("minx", "miny", "maxx", "maxy"), obj.box)),
        **{k: round(v, 1) for k, v in zip(("x1", "y1", "x2", "y2"), pixel_box)},
        "pitch_deg": obj.pitch_deg, "heading_deg": obj.heading_deg,
    }
    row.update({f"h{i}{j}": repr(float(homography[i, j])) for i in range(3) for j in range(3)})
    return row


def _csv_text(columns: tuple[str, ...], rows: list[dict[str, object]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder holding pan1.tif and ms1.tif")
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    with replace_atomically(OUT_DIR / REFERENCE) as tmp:
        shutil.copyfile(args.source / REFERENCE, tmp)
    with open_reference(OUT_DIR / REFERENCE) as ref, open_reference(args.source / DRONE_SOURCE, DRONE_BANDS) as src:
        up = (src.height * SOURCE_UPSAMPLE, src.width * SOURCE_UPSAMPLE)
        source_rgb, _ = read_window(src, Window(0, 0, src.width, src.height), up)
        source_rgb = cv2.GaussianBlur(source_rgb, (0, 0), SOURCE_BLUR_PX * SOURCE_UPSAMPLE)
        # Enlarged drone-source pixels -> world -> reference pixels: both rasters share the CRS.
        source_to_ref = np.array(~ref.transform * src.transform * Affine.scale(1.0 / SOURCE_UPSAMPLE)).reshape(3, 3)
        gsd_m = abs(ref.transform.a)
        rows = []
        for obj in OBJECTS:
            homography = _homography(obj, ref.transform, gsd_m)
            rows.append(truth_row(obj, homography, ref.transform, ref.crs.to_string()))
            photo = render(obj, source_rgb, source_to_ref, homography, (ref.width, ref.height))
            _, encoded = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            with replace_atomically(OUT_DIR / obj.photo) as tmp:
                tmp.write_bytes(encoded.tobytes())
    write_text_atomic(OUT_DIR / "clicks.csv", _csv_text(("image", "click_x", "click_y", "label"), rows))
    write_text_atomic(OUT_DIR / "truth.csv", _csv_text(TRUTH_COLUMNS, rows))
    for row in rows:
        print(f"{row['image']}: click ({row['click_x']}, {row['click_y']}), "
              f"box px ({row['x1']}, {row['y1']}, {row['x2']}, {row['y2']})")


if __name__ == "__main__":
    main()
