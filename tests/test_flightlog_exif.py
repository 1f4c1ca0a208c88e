"""Photo pose from EXIF GPS and DJI / senseFly XMP."""

from datetime import datetime
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from smgeo_cli.errors import InputFileError
from smgeo_cli.geo.exif import PhotoHints, photo_hints, read_focal_35mm, read_photo_pose
from smgeo_cli.geo.flightlog import FULL_FRAME_DIAGONAL_MM, PhotoPose

DATA = Path(__file__).parent / "data" / "flightlog"
GPS = ExifTags.GPS


def _jpeg(path: Path, gps: dict | None = None, xmp: bytes | None = None, focal_35mm: int | None = None) -> Path:
    exif = Image.Exif()
    if gps:
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(gps)
    if focal_35mm is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = focal_35mm
    kwargs = {"exif": exif}
    if xmp is not None:
        kwargs["xmp"] = xmp
    Image.new("RGB", (16, 12), "gray").save(path, **kwargs)
    return path


def _gps(lat: tuple, lat_ref: str, lon: tuple, lon_ref: str, altitude: float | None = None, below_sea=False) -> dict:
    """An EXIF GPS IFD: (degrees, minutes, seconds) triples, refs, optional altitude."""
    gps = {GPS.GPSLatitude: lat, GPS.GPSLatitudeRef: lat_ref, GPS.GPSLongitude: lon, GPS.GPSLongitudeRef: lon_ref}
    if altitude is not None:
        gps |= {GPS.GPSAltitude: altitude, GPS.GPSAltitudeRef: b"\x01" if below_sea else b"\x00"}
    return gps


def _dji_xmp(properties: dict[str, str], as_elements: bool) -> bytes:
    """An XMP packet as DJI writes it, with drone-dji properties as attributes or child elements."""
    if as_elements:
        attributes = ""
        elements = "".join(f"<drone-dji:{k}>{v}</drone-dji:{k}>" for k, v in properties.items())
    else:
        attributes = " ".join(f'drone-dji:{k}="{v}"' for k, v in properties.items())
        elements = ""
    return (
        "<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>"
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        f'xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" tiff:Make="DJI" {attributes}>{elements}'
        "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>"
    ).encode("utf-8")


def test_real_dji_photo_exif_gps():
    # brighton_DJI_0018 (DJI FC300S), EXIF copied byte for byte. Raw GPS rationals,
    # read once with PIL's get_ifd(GPSInfo): lat (46/1, 50/1, 333855/10000) N,
    # lon (91/1, 59/1, 404156/10000) W, altitude 198309/1000 with ref 0.
    pose = read_photo_pose(DATA / "brighton_DJI_0018_64px.jpg")
    assert pose.lat == pytest.approx(46 + 50 / 60 + 33.3855 / 3600, abs=1e-12)
    assert pose.lon == pytest.approx(-(91 + 59 / 60 + 40.4156 / 3600), abs=1e-12)
    assert pose.abs_alt_m == pytest.approx(198.309)
    assert pose.time == datetime(2016, 6, 23, 16, 31, 59)
    assert pose.source == "exif"
    assert (pose.rel_alt_m, pose.yaw_deg, pose.pitch_deg) == (None, None, None)


def test_real_sensefly_photo_exif_gps_and_camera_xmp():
    # tiny_drone_image.jpg (Canon S110 on a senseFly eBee): EXIF lat (41, 13, 437032/12511) N,
    # lon (81, 42, 159481/8053) W; XMP Camera:Yaw 274.931243896484375, Camera:Pitch 2.36006...
    # measured from nadir.
    pose = read_photo_pose(DATA / "tiny_drone_image.jpg")
    assert pose.lat == pytest.approx(41 + 13 / 60 + 437032 / 12511 / 3600, abs=1e-12)
    assert pose.lon == pytest.approx(-(81 + 42 / 60 + 159481 / 8053 / 3600), abs=1e-12)
    assert pose.abs_alt_m == pytest.approx(99907 / 228)
    assert pose.yaw_deg == pytest.approx(274.931243896484375)
    assert pose.pitch_deg == pytest.approx(2.360064983367920 - 90.0)
    assert pose.time == datetime(2015, 7, 31, 14, 32, 14)
    assert pose.source == "xmp-sensefly"


def test_sensefly_namespace_of_older_ebee_firmware(tmp_path):
    # The layout of IMG_2280.JPG (senseFly eBee, 2014): sensefly: namespace, elements.
    xmp = (
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        b"<rdf:Description rdf:about='' xmlns:sensefly='http://ns.sensefly.com/sensefly/1.0/'>"
        b"<sensefly:Pitch>11.598008155822754</sensefly:Pitch><sensefly:Yaw>307.860015869140625</sensefly:Yaw>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    gps = _gps((37.0, 32.0, 41.5838), "N", (139.0, 2.0, 46.9817), "E")
    pose = read_photo_pose(_jpeg(tmp_path / "ebee.jpg", gps, xmp))
    assert (pose.yaw_deg, pose.pitch_deg) == pytest.approx((307.860015869140625, 11.598008155822754 - 90.0))
    assert pose.lon > 0


@pytest.mark.parametrize("as_elements", [False, True], ids=["attributes", "elements"])
def test_dji_xmp_every_field_and_xmp_wins_over_exif(tmp_path, as_elements):
    # EXIF says something else (rounded, as DJI EXIF often is): XMP must win.
    gps = _gps((41.0, 30.0, 0.0), "N", (83.0, 40.0, 0.0), "W", altitude=250.0)
    xmp = _dji_xmp(
        {
            "GpsLatitude": "41.54859616",
            "GpsLongitude": "-83.69864877",
            "AbsoluteAltitude": "+250.123",
            "RelativeAltitude": "+30.10",
            "GimbalYawDegree": "-12.30",
            "GimbalPitchDegree": "-45.00",
            "FlightYawDegree": "+100.00",
        },
        as_elements,
    )
    pose = read_photo_pose(_jpeg(tmp_path / "dji.jpg", gps, xmp))
    assert pose.lat == pytest.approx(41.54859616)
    assert pose.lon == pytest.approx(-83.69864877)
    assert pose.abs_alt_m == pytest.approx(250.123)
    assert pose.rel_alt_m == pytest.approx(30.10)
    assert pose.yaw_deg == pytest.approx(360.0 - 12.30)
    assert pose.pitch_deg == pytest.approx(-45.0)
    assert pose.source == "xmp-dji"


def test_dji_xmp_alone_with_longtitude_spelling_and_flight_yaw_fallback(tmp_path):
    xmp = _dji_xmp(
        {"GpsLatitude": "-34.2379", "GpsLongtitude": "-58.8517", "RelativeAltitude": "85.8", "FlightYawDegree": "110.1"},
        as_elements=True,
    )
    pose = read_photo_pose(_jpeg(tmp_path / "dji.jpg", xmp=xmp))
    assert (pose.lat, pose.lon, pose.rel_alt_m, pose.yaw_deg) == pytest.approx((-34.2379, -58.8517, 85.8, 110.1))
    assert pose.abs_alt_m is None and pose.pitch_deg is None


def test_exif_south_west_and_below_sea_level(tmp_path):
    gps = _gps((12.0, 30.0, 36.0), "S", (45.0, 15.0, 0.0), "W", altitude=3.5, below_sea=True)
    pose = read_photo_pose(_jpeg(tmp_path / "sw.jpg", gps))
    assert (pose.lat, pose.lon, pose.abs_alt_m) == pytest.approx((-12.51, -45.25, -3.5))


def test_photo_without_position_gives_none(tmp_path):
    assert read_photo_pose(_jpeg(tmp_path / "plain.jpg")) is None
    # DJI before GPS lock writes 0, 0: no position either.
    no_fix = _dji_xmp({"GpsLatitude": "0.0", "GpsLongitude": "0.0"}, as_elements=False)
    assert read_photo_pose(_jpeg(tmp_path / "nofix.jpg", xmp=no_fix)) is None


def test_malformed_xmp_warns_and_keeps_exif(tmp_path):
    gps = _gps((10.0, 0.0, 0.0), "N", (20.0, 0.0, 0.0), "E")
    path = _jpeg(tmp_path / "bad_xmp.jpg", gps, xmp=b"<x:xmpmeta><unclosed>")
    with pytest.warns(UserWarning, match="not well-formed"):
        pose = read_photo_pose(path)
    assert (pose.lat, pose.lon, pose.source) == (10.0, 20.0, "exif")


def test_unreadable_image_and_bad_values_raise_input_file_error(tmp_path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a jpeg")
    with pytest.raises(InputFileError, match="notes.jpg"):
        read_photo_pose(not_an_image)
    with pytest.raises(InputFileError, match="missing.jpg"):
        read_photo_pose(tmp_path / "missing.jpg")
    bad = _jpeg(tmp_path / "bad.jpg", xmp=_dji_xmp({"GpsLatitude": "north", "GpsLongitude": "1.0"}, False))
    with pytest.raises(InputFileError, match="GpsLatitude='north'"):
        read_photo_pose(bad)


def test_real_dji_photo_focal_length_but_no_height_gives_no_ground_sample_distance():
    # The Phantom 3's FC300S: 20 mm equivalent. Its EXIF has no height above take-off, so no GSD.
    photo = DATA / "brighton_DJI_0018_64px.jpg"
    assert read_focal_35mm(photo) == 20.0
    assert photo_hints(photo, (64, 48)) == PhotoHints()


def test_dji_photo_hints_give_the_heading_and_the_ground_sample_distance(tmp_path):
    xmp = _dji_xmp(
        {"GpsLatitude": "41.5", "GpsLongitude": "-83.7", "RelativeAltitude": "+100.0",
         "GimbalYawDegree": "-12.30", "GimbalPitchDegree": "-90.0"},
        as_elements=False,
    )  # fmt: skip
    photo = _jpeg(tmp_path / "dji.jpg", xmp=xmp, focal_35mm=24)
    hints = photo_hints(photo, (4000, 3000))
    # Nadir from 100 m with a 24 mm lens: the 5000-pixel diagonal spans 100 * 43.27 / 24 m.
    assert hints.heading_deg == pytest.approx(347.7)
    assert hints.gsd_m == pytest.approx(100.0 * FULL_FRAME_DIAGONAL_MM / 24 / 5000)
    assert hints.zoom(0.5) == pytest.approx(hints.gsd_m / 0.5)
    # Tilted 45 degrees, the ground at the centre is sqrt 2 times farther; too close to the horizon, unknown.
    tilted = photo_hints(photo, (4000, 3000), pose=PhotoPose(41.5, -83.7, rel_alt_m=100.0, pitch_deg=-45.0))
    assert tilted.gsd_m == pytest.approx(hints.gsd_m * 2**0.5) and tilted.heading_deg is None
    grazing = PhotoPose(41.5, -83.7, rel_alt_m=100.0, pitch_deg=-5.0)
    assert photo_hints(photo, (4000, 3000), pose=grazing).gsd_m is None
