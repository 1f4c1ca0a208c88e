"""Where a drone photo was taken and where its camera looked.

`PhotoPose` is the one record every flight-metadata reader returns (EXIF/XMP in
`geo.exif`, DJI SRT telemetry in `geo.srt`, CSV manifests in `geo.manifest`);
`ground_point` turns a pose into the ground point the optical axis hits, which
is the centre of the search area. All positions are WGS84 (EPSG:4326) degrees,
heights metres, angles degrees.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

from pyproj import Geod

__all__ = ["PhotoPose", "dms_to_degrees", "ground_point", "ground_sample_distance", "is_no_fix", "parse_datetime"]

_WGS84 = Geod(ellps="WGS84")

# A camera tilted further than this from nadir (pitch above -10 degrees) sees
# the horizon: the flat-ground model puts its axis kilometres away, infinitely
# far at pitch 0, and a one-degree pitch error moves that point by hundreds of m.
MAX_OFF_NADIR_DEG = 80.0
# Diagonal of the 36 x 24 mm frame that "35 mm equivalent" focal lengths refer to.
FULL_FRAME_DIAGONAL_MM = 43.27


@dataclass(frozen=True)
class PhotoPose:
    """Position and camera attitude of one photo or video frame.

    Attributes:
        lat, lon: WGS84 degrees, north and east positive.
        abs_alt_m: height above sea level (as GPS/EXIF report it), metres.
        rel_alt_m: height above the take-off point, metres.
        yaw_deg: gimbal yaw, degrees clockwise from true north, in [0, 360).
        pitch_deg: gimbal pitch, degrees: 0 = horizon, -90 = nadir.
        time: when the photo was taken; naive unless the source gives an offset.
        source: where the values came from: "exif", "xmp-dji", "xmp-sensefly",
            "srt", "csv", or "user" (given directly).
    """

    lat: float
    lon: float
    abs_alt_m: float | None = None
    rel_alt_m: float | None = None
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    time: datetime | None = None
    source: str = "user"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat) and -90.0 <= self.lat <= 90.0):
            raise ValueError(f"latitude {self.lat} is outside [-90, 90]")
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"longitude {self.lon} is outside [-180, 180]")
        for name in ("abs_alt_m", "rel_alt_m", "yaw_deg", "pitch_deg"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} is {value}")
        if self.yaw_deg is not None:
            # DJI reports yaw in [-180, 180]; one range keeps poses comparable.
            object.__setattr__(self, "yaw_deg", self.yaw_deg % 360.0)


def is_no_fix(lat: float, lon: float) -> bool:
    """True for (0, 0): what DJI aircraft write before they have a GPS lock.

    No drone flies at 0N 0E (open Atlantic), so readers treat it as "no
    position" rather than a search area in the ocean.
    """
    return lat == 0.0 and lon == 0.0


def dms_to_degrees(degrees: float, minutes: float = 0.0, seconds: float = 0.0, hemisphere: str = "") -> float:
    """Degrees, minutes, seconds and an optional N/S/E/W letter -> signed degrees.

    S and W, or a negative `degrees`, give a negative result. Raises ValueError
    for minutes or seconds outside [0, 60) and for a sign that contradicts the
    hemisphere (e.g. -8 with N).
    """
    if not (0.0 <= minutes < 60.0 and 0.0 <= seconds < 60.0):
        raise ValueError(f"minutes {minutes} and seconds {seconds} must lie in [0, 60)")
    hemisphere = hemisphere.strip().upper()
    if hemisphere not in ("", "N", "S", "E", "W"):
        raise ValueError(f"hemisphere {hemisphere!r} is not N, S, E or W")
    negative = math.copysign(1.0, degrees) < 0
    if negative and hemisphere in ("N", "E"):
        raise ValueError(f"negative degrees {degrees} contradict hemisphere {hemisphere}")
    value = abs(degrees) + minutes / 60.0 + seconds / 3600.0
    return -value if negative or hemisphere in ("S", "W") else value


_EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})")


def parse_datetime(text: str) -> datetime | None:
    """EXIF ("2015:10:16 13:23:16") or ISO 8601 date-time text -> datetime.

    Returns None for an empty value or the all-zero date cameras write when
    their clock is unset; raises ValueError for anything else unparseable.
    """
    text = text.strip()
    if not text or text.startswith("0000"):
        return None
    return datetime.fromisoformat(_EXIF_DATE.sub(r"\1-\2-\3", text))


def ground_point(pose: PhotoPose, default_pitch: float = -90.0) -> tuple[float, float]:
    """(lat, lon) in WGS84 degrees where the camera's optical axis meets the ground.

    The ground is taken as flat at the take-off height, so the axis travels
    ``rel_alt * tan(90 + pitch)`` metres horizontally (0 m at nadir, rel_alt
    at -45 degrees) along the yaw bearing, measured on the WGS84 ellipsoid.
    `default_pitch` stands in for a pose without a gimbal pitch.

    The GPS point itself is returned when the offset cannot be known or would
    mislead: no height above take-off (or a negative one: the aircraft is below
    the take-off point, the ground under it is unknown), no yaw for a tilted
    camera, or a camera more than `MAX_OFF_NADIR_DEG` (80 degrees) from nadir,
    i.e. a pitch above -10 degrees: it sees the horizon, and a small pitch
    error moves the point by kilometres.
    """
    pitch = default_pitch if pose.pitch_deg is None else pose.pitch_deg
    off_nadir = 90.0 + pitch  # positive: tilted forward along the yaw bearing
    if pose.rel_alt_m is None or pose.rel_alt_m <= 0.0 or abs(off_nadir) > MAX_OFF_NADIR_DEG:
        return pose.lat, pose.lon
    distance = pose.rel_alt_m * math.tan(math.radians(off_nadir))
    if distance == 0.0 or pose.yaw_deg is None:
        return pose.lat, pose.lon
    # Past nadir (pitch < -90) the distance is negative: the axis points behind.
    lon, lat, _ = _WGS84.fwd(pose.lon, pose.lat, pose.yaw_deg, distance)
    return lat, lon


def ground_sample_distance(
    pose: PhotoPose | None, focal_35mm_mm: float | None, image_size: tuple[int, int]
) -> float | None:
    """Metres of ground per photo pixel at the photo's centre, or None when the metadata cannot tell.

    The camera's diagonal field of view follows from its 35 mm equivalent
    focal length (EXIF FocalLengthIn35mmFilm): the image diagonal spans
    ``FULL_FRAME_DIAGONAL_MM / focal`` of the distance to the ground. That
    distance is the height above take-off along the optical axis (flat
    ground, as in ``ground_point``), so a photo of a resized file still gets
    the right value: the pixel count is ``image_size`` (width, height) as read.
    None without a positive height or focal length, or for a camera more than
    ``MAX_OFF_NADIR_DEG`` from nadir.
    """
    if pose is None or pose.rel_alt_m is None or pose.rel_alt_m <= 0.0:
        return None
    if focal_35mm_mm is None or not math.isfinite(focal_35mm_mm) or focal_35mm_mm <= 0.0:
        return None
    off_nadir = 90.0 + (-90.0 if pose.pitch_deg is None else pose.pitch_deg)
    if abs(off_nadir) > MAX_OFF_NADIR_DEG:
        return None
    distance = pose.rel_alt_m / math.cos(math.radians(off_nadir))
    return distance * FULL_FRAME_DIAGONAL_MM / (focal_35mm_mm * math.hypot(*image_size))
