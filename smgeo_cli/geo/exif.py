"""Photo pose from the metadata inside an image file: EXIF GPS and XMP.

EXIF gives the position (GPSLatitude/Longitude/Altitude) and DateTimeOriginal.
XMP adds what EXIF lacks, per vendor:

- DJI (`drone-dji:` namespace): GpsLatitude, GpsLongitude (or DJI's own
  misspelling GpsLongtitude), AbsoluteAltitude, RelativeAltitude (height above
  take-off), GimbalYawDegree, GimbalPitchDegree (-90 = nadir), FlightYawDegree.
  DJI writes these as attributes of rdf:Description or as child elements; both
  are read. Where both EXIF and DJI XMP have a value, XMP wins: it carries more
  digits (EXIF altitude is often rounded to 0.1 m or less).
- senseFly (`sensefly:` and `Camera:` namespaces): Yaw and Pitch of the camera,
  pitch measured from nadir (0 = straight down), as ODM and Pix4D read them.

Pillow finds the XMP packet (the APP1 segment whose header is
``http://ns.adobe.com/xap/1.0/``) while opening the file; the packet is parsed
with the standard library's ElementTree, matching properties by namespace URI.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from xml.etree import ElementTree

from PIL import ExifTags, Image

from smgeo_cli.errors import InputFileError, SmgeoWarning
from smgeo_cli.geo.flightlog import PhotoPose, dms_to_degrees, ground_sample_distance, is_no_fix, parse_datetime
from smgeo_cli.images import open_image

__all__ = ["PhotoHints", "photo_hints", "read_focal_35mm", "read_photo_pose"]

_DJI = "{http://www.dji.com/drone-dji/1.0/}"
_SENSEFLY = ("{http://ns.sensefly.com/sensefly/1.0/}", "{http://ns.sensefly.com/Camera/1.0/}")

_GPS = ExifTags.GPS


def _exif_coordinate(gps: dict, value_tag: int, ref_tag: int) -> float | None:
    """An EXIF (degrees, minutes, seconds) rational triple and its N/S/E/W ref.

    None when the tag is absent or holds 0/0 rationals (no fix).
    """
    value = gps.get(value_tag)
    if value is None:
        return None
    parts = [float(v) for v in (value if isinstance(value, tuple) else (value,))]
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"EXIF {_GPS(value_tag).name} {value!r} is not (degrees, minutes, seconds)")
    if not all(math.isfinite(p) for p in parts):
        return None
    ref = gps.get(ref_tag, "")
    ref = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref)
    return dms_to_degrees(*parts, hemisphere=ref.strip("\x00 "))


def _exif_fields(exif: Image.Exif) -> dict:
    """PhotoPose fields found in EXIF; keys absent where EXIF has no value."""
    fields: dict = {}
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    lat = _exif_coordinate(gps, _GPS.GPSLatitude, _GPS.GPSLatitudeRef)
    lon = _exif_coordinate(gps, _GPS.GPSLongitude, _GPS.GPSLongitudeRef)
    if lat is not None and lon is not None and not is_no_fix(lat, lon):
        fields.update(lat=lat, lon=lon)
    altitude = gps.get(_GPS.GPSAltitude)
    if altitude is not None and math.isfinite(float(altitude)):
        below_sea_level = gps.get(_GPS.GPSAltitudeRef) in (1, b"\x01")
        fields["abs_alt_m"] = -float(altitude) if below_sea_level else float(altitude)
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    taken = exif_ifd.get(ExifTags.Base.DateTimeOriginal)
    if taken:
        time = parse_datetime(str(taken))
        offset = exif_ifd.get(ExifTags.Base.OffsetTimeOriginal)
        if time is not None and offset:
            time = time.replace(tzinfo=datetime.strptime(str(offset).strip(), "%z").tzinfo)
        fields["time"] = time
    return fields


def _xmp_properties(packet: bytes | str) -> dict[str, str]:
    """Every simple XMP property, keyed "{namespace-uri}Name", attributes and elements alike."""
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    root = ElementTree.fromstring(packet.strip(b"\x00 \t\r\n"))
    properties: dict[str, str] = {}
    for element in root.iter():
        properties.update(element.attrib)
        if len(element) == 0 and element.text and element.text.strip():
            properties[element.tag] = element.text.strip()
    return properties


def _first_float(properties: dict[str, str], *keys: str) -> float | None:
    """The first of `keys` present, as a float ("+12.30" included)."""
    for key in keys:
        if key in properties:
            try:
                return float(properties[key])
            except ValueError:
                name = key.rpartition("}")[2]
                raise ValueError(f"XMP {name}={properties[key]!r} is not a number") from None
    return None


def _xmp_fields(properties: dict[str, str]) -> tuple[dict, str | None]:
    """PhotoPose fields from DJI or senseFly XMP, and the source name to report."""
    dji = {
        "lat": _first_float(properties, _DJI + "GpsLatitude"),
        "lon": _first_float(properties, _DJI + "GpsLongitude", _DJI + "GpsLongtitude"),
        "abs_alt_m": _first_float(properties, _DJI + "AbsoluteAltitude"),
        "rel_alt_m": _first_float(properties, _DJI + "RelativeAltitude"),
        # The gimbal can turn away from the nose; the aircraft heading is the
        # best guess only when the gimbal's own yaw is missing.
        "yaw_deg": _first_float(properties, _DJI + "GimbalYawDegree", _DJI + "FlightYawDegree"),
        "pitch_deg": _first_float(properties, _DJI + "GimbalPitchDegree"),
    }
    if dji["lat"] is None or dji["lon"] is None or is_no_fix(dji["lat"], dji["lon"]):
        dji["lat"] = dji["lon"] = None  # a half or zero position is no position
    dji = {k: v for k, v in dji.items() if v is not None}
    if dji:
        return dji, "xmp-dji"
    for ns in _SENSEFLY:
        yaw = _first_float(properties, ns + "Yaw")
        pitch_from_nadir = _first_float(properties, ns + "Pitch")
        if yaw is not None or pitch_from_nadir is not None:
            fields = {"yaw_deg": yaw}
            if pitch_from_nadir is not None:
                fields["pitch_deg"] = pitch_from_nadir - 90.0
            return {k: v for k, v in fields.items() if v is not None}, "xmp-sensefly"
    return {}, None


def read_photo_pose(path: str | PathLike) -> PhotoPose | None:
    """Pose of the photo at `path` from its EXIF GPS and DJI/senseFly XMP.

    Returns None when the file carries no position. Raises InputFileError when
    the file cannot be opened as an image or its GPS values are malformed. An
    XMP packet that is not well-formed XML is skipped with a warning (the EXIF
    position still counts).
    """
    with open_image(path, "photo") as image:
        try:
            exif = image.getexif()
            packet = image.info.get("xmp")
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputFileError(f"{path}: cannot read the photo's metadata ({exc})") from exc
    try:
        fields = _exif_fields(exif)
        source = "exif"
        if packet:
            try:
                properties = _xmp_properties(packet)
            except ElementTree.ParseError as exc:
                warnings.warn(
                    f"{path}: XMP packet is not well-formed XML ({exc}); using EXIF only", SmgeoWarning, stacklevel=2
                )
            else:
                xmp, xmp_source = _xmp_fields(properties)
                fields.update(xmp)
                source = xmp_source or source
        if "lat" not in fields or "lon" not in fields:
            return None
        return PhotoPose(**fields, source=source)
    except ValueError as exc:
        raise InputFileError(f"{path}: bad photo metadata: {exc}") from exc


def read_focal_35mm(path: str | PathLike) -> float | None:
    """The photo's 35 mm equivalent focal length in mm (EXIF FocalLengthIn35mmFilm), or None.

    None also when the file cannot be read: the focal length only refines a
    search that works without it.
    """
    try:
        with open_image(path, "photo") as image:
            value = image.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.FocalLengthIn35mmFilm)
        focal = float(value)
    except (InputFileError, OSError, ValueError, TypeError, ZeroDivisionError):
        return None
    return focal if math.isfinite(focal) and focal > 0 else None


@dataclass(frozen=True)
class PhotoHints:
    """What the photo's metadata says about its look: ``heading_deg``, the bearing its top faces (degrees
    clockwise from north), and ``gsd_m``, metres of ground per photo pixel at its centre; None where unknown."""

    heading_deg: float | None = None
    gsd_m: float | None = None

    def zoom(self, tile_gsd_m: float) -> float | None:
        """Tile pixels per photo pixel for tiles of ``tile_gsd_m`` metres per pixel."""
        return None if self.gsd_m is None else self.gsd_m / tile_gsd_m


def photo_hints(photo: str | PathLike, photo_size: tuple[int, int], pose: PhotoPose | None = None) -> PhotoHints:
    """The photo's heading and ground sample distance from ``pose`` (else its own EXIF/XMP) and EXIF focal length.

    Metadata that cannot be read gives no hints rather than an error: they
    only speed up and sharpen a search that works without them.
    """
    if pose is None:
        try:
            pose = read_photo_pose(photo)
        except InputFileError:
            return PhotoHints()
    if pose is None:
        return PhotoHints()
    return PhotoHints(pose.yaw_deg, ground_sample_distance(pose, read_focal_35mm(photo), photo_size))
