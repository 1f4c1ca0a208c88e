"""CSV inputs of a batch run: click manifests and per-image pose tables.

A click manifest lists queries, one a row, several rows per image allowed::

    image,click_x,click_y[,lat,lon,rel_alt,abs_alt,yaw,pitch,time,label]

(a clicks CSV is the same without the pose columns). A pose table lists one
pose per image without clicks, e.g. ``exiftool -csv -GPSLatitude ... *.JPG``
output. Headers are matched case-insensitively, ignoring spaces, "_" and "-"
(``Click X`` = ``click_x``), under the names in `_COLUMNS`; a unit suffix in
brackets is honoured: ``altitude(m)``, ``height_above_takeoff(feet)`` (feet
become metres), ``pitch[deg]``. Latitude and longitude may be decimal degrees
or DMS text as exiftool prints it (``8 deg 29' 10.35" N``). Pitch follows DJI:
0 = horizon, -90 = nadir; yaw is degrees clockwise from north. ``altitude``
means above sea level, as in EXIF; height above take-off is ``rel_alt`` or
``height_above_takeoff``.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import PurePath
from typing import Iterator

from smgeo_cli.errors import InputFileError
from smgeo_cli.geo.flightlog import PhotoPose, dms_to_degrees, is_no_fix, parse_datetime

__all__ = ["ManifestRow", "read_manifest", "read_pose_table"]

# field -> accepted header names (squashed: lower case, no " _-"), preferred first.
# Gimbal angles come before aircraft ones: flight logs carry both, and the
# gimbal is what points the camera.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "image": ("image", "imagename", "filename", "file", "sourcefile"),
    "click_x": ("clickx",),
    "click_y": ("clicky",),
    "label": ("label",),
    "lat": ("lat", "latitude", "gpslatitude"),
    "lon": ("lon", "lng", "long", "longitude", "gpslongitude"),
    "rel_alt_m": ("relalt", "relativealtitude", "heightabovetakeoff"),
    "abs_alt_m": ("absalt", "absolutealtitude", "altitude", "gpsaltitude", "altitudeabovesealevel"),
    "yaw_deg": ("gimbalyawdegree", "gimbalyaw", "gimbalheading", "yaw", "flightyawdegree", "heading"),
    "pitch_deg": ("gimbalpitchdegree", "gimbalpitch", "pitch"),
    "time": ("datetimeoriginal", "datetime", "timestamp"),
}
_METRE, _FOOT = 1.0, 0.3048
_LENGTH_UNITS = {"m": _METRE, "meter": _METRE, "meters": _METRE, "metre": _METRE, "metres": _METRE}
_LENGTH_UNITS |= {"ft": _FOOT, "feet": _FOOT, "foot": _FOOT}
_ANGLE_UNITS = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0}
_PIXEL_UNITS = {"px": 1.0, "pixel": 1.0, "pixels": 1.0}
_UNITS = {
    "click_x": _PIXEL_UNITS,
    "click_y": _PIXEL_UNITS,
    "lat": _ANGLE_UNITS,
    "lon": _ANGLE_UNITS,
    "rel_alt_m": _LENGTH_UNITS,
    "abs_alt_m": _LENGTH_UNITS,
    "yaw_deg": _ANGLE_UNITS,
    "pitch_deg": _ANGLE_UNITS,
}
_HEADER = re.compile(r"^(.*?)\s*(?:[(\[]\s*([^)\]]*?)\s*[)\]])?$")
_DMS = re.compile(
    r"""^\s*([NSEW])?\s*([-+]?\d+(?:\.\d+)?)\s*(?:°|deg)?\s*
    (?:(\d+(?:\.\d+)?)\s*'?\s*)?(?:(\d+(?:\.\d+)?)\s*"?\s*)?([NSEW])?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class ManifestRow:
    """One query of a click manifest.

    Attributes:
        image: the image path as written in the CSV (relative paths are
            relative to the CSV's folder).
        click_x, click_y: the click in image pixels, (column, row) from the
            top-left, on the image as displayed (EXIF orientation applied).
        label: free text, or None.
        pose: the row's own pose, or None when it has no lat/lon (the batch
            then falls back on the image's EXIF/XMP).
        line: line number in the CSV (the header is line 1), for error reports.
        problem: why the row cannot be used (an empty or malformed value),
            naming the file and line; None for a good row. A bad row's
            clicks are NaN and its pose None.
    """

    image: str
    click_x: float
    click_y: float
    label: str | None
    pose: PhotoPose | None
    line: int
    problem: str | None = None


@dataclass(frozen=True)
class _Column:
    index: int
    scale: float


def _resolve_columns(header: list[str], path: str | PathLike, required: tuple[str, ...]) -> dict[str, _Column]:
    """Map PhotoPose/ManifestRow fields to the header's columns; first alias present wins."""
    found: dict[str, tuple[int, str]] = {}
    for index, name in enumerate(header):
        base, unit = _HEADER.match(name.strip()).groups()
        found.setdefault(re.sub(r"[\s_\-]", "", base.lower()), (index, (unit or "").lower()))
    columns = {}
    for field, aliases in _COLUMNS.items():
        alias = next((a for a in aliases if a in found), None)
        if alias is None:
            continue
        index, unit = found[alias]
        units = _UNITS.get(field)
        if units is None or not unit:
            columns[field] = _Column(index, 1.0)
        elif unit in units:
            columns[field] = _Column(index, units[unit])
        else:
            raise InputFileError(f"{path}: column {header[index]!r} has unit {unit!r}; use one of {sorted(units)}")
    missing = [field for field in required if field not in columns]
    if missing:
        raise InputFileError(f"{path}: no column for {', '.join(missing)}; columns found: {', '.join(header)}")
    return columns


def _coordinate(text: str, axis: str) -> float:
    """Decimal degrees or DMS text ("8 deg 29' 10.35\\" N") -> signed degrees."""
    match = _DMS.match(text)
    if match is None:
        raise ValueError(f"{axis} {text!r} is neither decimal degrees nor degrees/minutes/seconds")
    before, degrees, minutes, seconds, after = match.groups()
    if before and after:
        raise ValueError(f"{axis} {text!r} has two hemisphere letters")
    if (minutes and "." in degrees) or (seconds and "." in minutes):
        raise ValueError(f"{axis} {text!r} has a fraction before its last part")
    hemisphere = (before or after or "").upper()
    if hemisphere and (hemisphere in "NS") != (axis == "latitude"):
        raise ValueError(f"{axis} {text!r} has hemisphere {hemisphere}")
    return dms_to_degrees(float(degrees), float(minutes or 0), float(seconds or 0), hemisphere)


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{name} is {text!r}, not a number")
    return value


def _cell(cells: list[str], columns: dict[str, _Column], field: str) -> str:
    column = columns.get(field)
    return cells[column.index].strip() if column is not None and column.index < len(cells) else ""


def _row_pose(cells: list[str], columns: dict[str, _Column]) -> PhotoPose | None:
    """The row's pose, or None when lat and lon are both empty or (0, 0); raises ValueError."""
    lat_text, lon_text = _cell(cells, columns, "lat"), _cell(cells, columns, "lon")
    if not lat_text and not lon_text:
        return None
    if not lat_text or not lon_text:
        raise ValueError("lat and lon must both be given or both be empty")
    lat = _coordinate(lat_text, "latitude") * columns["lat"].scale
    lon = _coordinate(lon_text, "longitude") * columns["lon"].scale
    if is_no_fix(lat, lon):
        return None
    fields = {}
    for field in ("abs_alt_m", "rel_alt_m", "yaw_deg", "pitch_deg"):
        text = _cell(cells, columns, field)
        if text:
            fields[field] = _number(text, field) * columns[field].scale
    time_text = _cell(cells, columns, "time")
    return PhotoPose(lat, lon, **fields, time=parse_datetime(time_text) if time_text else None, source="csv")


def _rows(path: str | PathLike, required: tuple[str, ...]) -> Iterator[tuple[int, list[str], dict[str, _Column]]]:
    """(line number, cells, columns) of each non-blank data row; rows' ValueErrors become InputFileErrors."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise InputFileError(f"{path}: empty CSV; expected a header row such as {','.join(required)}")
            columns = _resolve_columns(header, path, required)
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    yield reader.line_num, cells, columns
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path}: cannot read the CSV ({exc})") from exc


def read_manifest(path: str | PathLike) -> list[ManifestRow]:
    """Queries of a click manifest or clicks CSV, in file order.

    Requires image, click_x and click_y columns (InputFileError listing the
    columns found otherwise, or for a file that is not CSV text). A row with
    an empty or bad value is returned with its ``problem`` ("FILE:LINE:
    what is wrong"), so that a batch can report it and go on with the rest.
    """
    rows = []
    for line, cells, columns in _rows(path, ("image", "click_x", "click_y")):
        image = _cell(cells, columns, "image")
        label = _cell(cells, columns, "label") or None
        try:
            if not image:
                raise ValueError("image is empty")
            click = [_number(_cell(cells, columns, a), a) * columns[a].scale for a in ("click_x", "click_y")]
            pose = _row_pose(cells, columns)
        except ValueError as exc:
            rows.append(ManifestRow(image, math.nan, math.nan, label, None, line, f"{path}:{line}: {exc}"))
            continue
        rows.append(ManifestRow(image, *click, label, pose, line))
    return rows


def read_pose_table(path: str | PathLike) -> dict[str, PhotoPose]:
    """Per-image poses of a metadata CSV (e.g. exiftool -csv output), keyed by file name.

    Keys are bare file names (``./images/DJI_0201.JPG`` -> ``DJI_0201.JPG``)
    so the table matches images wherever they now live. Rows without a
    position are skipped. Raises InputFileError for a missing image, lat or lon
    column, a bad value (naming the line), or one image listed twice.
    """
    poses: dict[str, PhotoPose] = {}
    lines: dict[str, int] = {}
    for line, cells, columns in _rows(path, ("image", "lat", "lon")):
        name = PurePath(_cell(cells, columns, "image").replace("\\", "/")).name
        try:
            if not name:
                raise ValueError("image is empty")
            if name in lines:
                raise ValueError(f"{name} is listed again (first on line {lines[name]})")
            lines[name] = line
            pose = _row_pose(cells, columns)
        except ValueError as exc:
            raise InputFileError(f"{path}:{line}: {exc}") from exc
        if pose is not None:
            poses[name] = pose
    return poses
