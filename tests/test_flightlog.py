"""PhotoPose, coordinate helpers and the camera's ground point."""

import math
from datetime import datetime

import pytest
from pyproj import Geod

from smgeo_cli.geo.flightlog import PhotoPose, dms_to_degrees, ground_point, parse_datetime

# Metres per degree of longitude on the WGS84 equator: 2 * pi * a / 360.
EQUATOR_M_PER_DEG = 2 * math.pi * 6378137.0 / 360


def test_pose_normalises_yaw_and_rejects_impossible_positions():
    assert PhotoPose(10.0, 20.0, yaw_deg=-90.0).yaw_deg == 270.0
    assert PhotoPose(10.0, 20.0, yaw_deg=360.0).yaw_deg == 0.0
    with pytest.raises(ValueError, match="latitude"):
        PhotoPose(91.0, 0.0)
    with pytest.raises(ValueError, match="longitude"):
        PhotoPose(0.0, -180.5)
    with pytest.raises(ValueError, match="rel_alt_m"):
        PhotoPose(0.0, 0.0, rel_alt_m=float("nan"))


@pytest.mark.parametrize(
    ("parts", "hemisphere", "expected"),
    [
        ((8, 29, 10.35), "N", 8 + 29 / 60 + 10.35 / 3600),
        ((13, 12, 0.92), "W", -(13 + 12 / 60 + 0.92 / 3600)),
        ((34, 30, 0), "s", -34.5),
        ((-83.5, 0, 0), "", -83.5),
        ((-0.0, 30, 0), "", -0.5),  # "-0 deg 30'" stays south/west of zero
    ],
)
def test_dms_to_degrees(parts, hemisphere, expected):
    assert dms_to_degrees(*parts, hemisphere=hemisphere) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("parts", "hemisphere"), [((8, 60, 0), "N"), ((8, 0, 61), "N"), ((-8, 0, 0), "N"), ((8, 0, 0), "X")]
)
def test_dms_to_degrees_rejects_bad_parts(parts, hemisphere):
    with pytest.raises(ValueError):
        dms_to_degrees(*parts, hemisphere=hemisphere)


def test_parse_datetime_reads_exif_and_iso_and_skips_unset_clocks():
    assert parse_datetime("2015:10:16 13:23:16") == datetime(2015, 10, 16, 13, 23, 16)
    assert parse_datetime("2025-04-25T12:26:19+01:00").utcoffset().total_seconds() == 3600
    assert parse_datetime("  ") is None
    assert parse_datetime("0000:00:00 00:00:00") is None
    with pytest.raises(ValueError):
        parse_datetime("yesterday")


def test_ground_point_nadir_is_the_gps_point():
    pose = PhotoPose(41.5, -83.7, rel_alt_m=120.0, yaw_deg=33.0, pitch_deg=-90.0)
    assert ground_point(pose) == (41.5, -83.7)


def test_ground_point_at_45_degrees_is_one_height_away_along_yaw():
    # On the equator heading east, 100 m is 100 / (metres per degree) of longitude.
    pose = PhotoPose(0.0, 10.0, rel_alt_m=100.0, yaw_deg=90.0, pitch_deg=-45.0)
    lat, lon = ground_point(pose)
    assert lat == pytest.approx(0.0, abs=1e-9)
    assert lon == pytest.approx(10.0 + 100.0 / EQUATOR_M_PER_DEG, abs=1e-9)


@pytest.mark.parametrize(("pitch", "azimuth"), [(-60.0, 0.0), (-120.0, 180.0)])
def test_ground_point_distance_and_bearing(pitch, azimuth):
    # Pitch -60 looks 30 degrees forward; -120 is 30 degrees past nadir, i.e. behind.
    pose = PhotoPose(45.0, 7.0, rel_alt_m=100.0, yaw_deg=0.0, pitch_deg=pitch)
    lat, lon = ground_point(pose)
    forward, _, distance = Geod(ellps="WGS84").inv(7.0, 45.0, lon, lat)
    assert distance == pytest.approx(100.0 * math.tan(math.radians(30.0)), rel=1e-9)
    assert forward % 360 == pytest.approx(azimuth, abs=1e-6)


def test_ground_point_uses_default_pitch_when_pose_has_none():
    pose = PhotoPose(0.0, 10.0, rel_alt_m=50.0, yaw_deg=270.0)
    assert ground_point(pose) == (0.0, 10.0)
    lat, lon = ground_point(pose, default_pitch=-45.0)
    assert lon == pytest.approx(10.0 - 50.0 / EQUATOR_M_PER_DEG, abs=1e-9)


@pytest.mark.parametrize(
    "pose",
    [
        PhotoPose(41.5, -83.7, rel_alt_m=120.0, yaw_deg=0.0, pitch_deg=-5.0),  # looks at the horizon
        PhotoPose(41.5, -83.7, rel_alt_m=120.0, yaw_deg=0.0, pitch_deg=-175.0),  # horizon, behind
        PhotoPose(41.5, -83.7, yaw_deg=0.0, pitch_deg=-45.0),  # height unknown
        PhotoPose(41.5, -83.7, rel_alt_m=-20.0, yaw_deg=0.0, pitch_deg=-45.0),  # below take-off
        PhotoPose(41.5, -83.7, rel_alt_m=120.0, pitch_deg=-45.0),  # direction unknown
    ],
)
def test_ground_point_falls_back_to_gps_point(pose):
    assert ground_point(pose) == (41.5, -83.7)


def test_ground_point_just_below_the_horizon_limit_still_moves():
    pose = PhotoPose(41.5, -83.7, rel_alt_m=10.0, yaw_deg=0.0, pitch_deg=-10.5)
    lat, lon = ground_point(pose)
    _, _, distance = Geod(ellps="WGS84").inv(-83.7, 41.5, lon, lat)
    assert distance == pytest.approx(10.0 * math.tan(math.radians(79.5)), rel=1e-9)
