"""CSV click manifests and per-image pose tables."""

import re
from datetime import datetime
from pathlib import Path

import pytest

from smgeo_cli.errors import InputFileError
from smgeo_cli.geo.manifest import read_manifest, read_pose_table

DATA = Path(__file__).parent / "data" / "flightlog"
FEET = 0.3048


def _csv(tmp_path: Path, text: str, name: str = "clicks.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_real_exiftool_dump_with_dms_coordinates():
    table = read_pose_table(DATA / "freetown_metadata_head.csv")
    assert len(table) == 20
    # Line 2: "8 deg 27' 55.22"" N","13 deg 12' 0.92"" W",+390.734,-80.00,-89.60
    pose = table["DJI_20250416072557_0201_D.JPG"]
    assert pose.lat == pytest.approx(8 + 27 / 60 + 55.22 / 3600, abs=1e-12)
    assert pose.lon == pytest.approx(-(13 + 12 / 60 + 0.92 / 3600), abs=1e-12)
    assert pose.abs_alt_m == 390.734
    assert pose.pitch_deg == -80.0
    assert pose.yaw_deg == pytest.approx(270.4)  # FlightYawDegree -89.60: the only yaw column
    assert pose.time == datetime(2025, 4, 16, 7, 25, 57)
    assert pose.source == "csv"


def test_manifest_with_pose_columns_units_and_several_rows_per_image(tmp_path):
    path = _csv(
        tmp_path,
        " Image , Click X,CLICK_Y,Latitude,lng,height_above_takeoff(feet),altitude(m),Gimbal_Yaw[deg],pitch,Label\n"
        "a.jpg,10,20.5,41.5,-83.25,100,250.5,-90,-60,car\n"
        "a.jpg,30,40,41.5,-83.25,100,250.5,-90,-60,\n"
        "\n"
        "b.jpg,1,2,,,,,,,roof\n",
    )
    first, second, third = read_manifest(path)
    assert (first.image, first.click_x, first.click_y, first.label, first.line) == ("a.jpg", 10.0, 20.5, "car", 2)
    pose = first.pose
    assert (pose.lat, pose.lon) == (41.5, -83.25)
    assert pose.rel_alt_m == pytest.approx(100 * FEET)
    assert pose.abs_alt_m == 250.5
    assert (pose.yaw_deg, pose.pitch_deg) == (270.0, -60.0)
    assert (second.image, second.click_x, second.label) == ("a.jpg", 30.0, None)
    # Blank lines are skipped; line numbers still count them. No lat/lon: no pose.
    assert (third.image, third.line, third.label, third.pose) == ("b.jpg", 5, "roof", None)


def test_clicks_csv_without_pose_columns(tmp_path):
    rows = read_manifest(_csv(tmp_path, "image,click_x,click_y,label\nDJI_0061.JPG,412,230,bridge\n"))
    assert [(r.image, r.click_x, r.click_y, r.label, r.pose) for r in rows] == [
        ("DJI_0061.JPG", 412.0, 230.0, "bridge", None)
    ]


@pytest.mark.parametrize(
    ("lat", "expected"),
    [
        ('"8°29\'10.35""N"', 8 + 29 / 60 + 10.35 / 3600),
        ('"8 deg 29\' 10.35"" S"', -(8 + 29 / 60 + 10.35 / 3600)),
        ("S 8 29 10.35", -(8 + 29 / 60 + 10.35 / 3600)),
        ("8 30 N", 8.5),
        ("-8.486208", -8.486208),
    ],
)
def test_coordinate_spellings(tmp_path, lat, expected):
    (row,) = read_manifest(_csv(tmp_path, f"image,click_x,click_y,lat,lon\na.jpg,1,1,{lat},13.2\n"))
    assert row.pose.lat == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.jpg,ten,5,,", "click_x"),
        ("a.jpg,1,,,", "click_y"),
        (",1,2,,", "image is empty"),
        ("a.jpg,1,2,41.5,", "both"),
        ("a.jpg,1,2,41.5 E,-83", "hemisphere E"),
        ("a.jpg,1,2,95,-83", "latitude 95"),
        ("a.jpg,1,2,41.5 30,-83", "fraction"),
    ],
)
def test_bad_row_is_kept_with_its_problem_naming_file_and_line(tmp_path, row, message):
    path = _csv(tmp_path, f"image,click_x,click_y,lat,lon\nok.jpg,1,2,41,-83\n{row}\nlast.jpg,3,4,,\n")
    good, bad, last = read_manifest(path)
    assert good.problem is None and last.problem is None and (last.click_x, last.click_y) == (3.0, 4.0)
    assert re.search(rf"clicks\.csv:3: .*{message}", bad.problem) and bad.line == 3 and bad.pose is None


def test_missing_required_column_lists_columns_found(tmp_path):
    with pytest.raises(InputFileError, match=r"no column for click_x, click_y; columns found: SourceFile, FileName"):
        read_manifest(DATA / "freetown_metadata_head.csv")
    with pytest.raises(InputFileError, match="no column for lat"):
        read_pose_table(_csv(tmp_path, "image,lon\na.jpg,3\n"))


def test_unknown_unit_and_empty_file_raise(tmp_path):
    with pytest.raises(InputFileError, match="'rel_alt\\(km\\)' has unit 'km'"):
        read_manifest(_csv(tmp_path, "image,click_x,click_y,lat,lon,rel_alt(km)\n"))
    with pytest.raises(InputFileError, match="empty CSV"):
        read_manifest(_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(InputFileError, match="absent.csv"):
        read_manifest(tmp_path / "absent.csv")


def test_pose_table_keys_by_file_name_and_rejects_duplicates(tmp_path):
    text = "SourceFile,GPSLatitude,GPSLongitude\n./img/a.JPG,1,2\nC:\\flight\\b.JPG,3,4\nc.JPG,,\n"
    table = read_pose_table(_csv(tmp_path, text))
    assert {name: (p.lat, p.lon) for name, p in table.items()} == {"a.JPG": (1.0, 2.0), "b.JPG": (3.0, 4.0)}
    with pytest.raises(InputFileError, match=r"poses\.csv:3: a\.JPG is listed again \(first on line 2\)"):
        read_pose_table(_csv(tmp_path, "image,lat,lon\ndir1/a.JPG,1,2\ndir2/a.JPG,1,2\n", "poses.csv"))
