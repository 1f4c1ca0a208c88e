"""DJI SRT telemetry: the three dialects, and frames matched to entries."""

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from smgeo_cli.errors import InputFileError, UsageError
from smgeo_cli.geo.srt import SrtFrame, frames_for_srt, read_srt

DATA = Path(__file__).parent / "data" / "flightlog"

# Modern dialect with rel_alt/abs_alt and gimbal angles (Mini 3 / Mavic 3 Enterprise
# layout); the second entry is before GPS lock.
MODERN = """1
00:00:00,000 --> 00:00:00,033
<font size="28">FrameCnt: 1, DiffTime: 33ms
2023-04-01 10:15:30.123
[iso: 100] [shutter: 1/640.0] [fnum: 1.7] [ev: 0] [focal_len: 24.00] [latitude: 40.416775] [longitude: -3.703790] [rel_alt: 45.300 abs_alt: 712.450] [gb_yaw: -170.5 gb_pitch: -60.0 gb_roll: 0.0] </font>

2
00:00:00,033 --> 00:00:00,066
<font size="28">FrameCnt: 2, DiffTime: 33ms
2023-04-01 10:15:30.156
[iso: 100] [latitude: 0.000000] [longitude: 0.000000] [rel_alt: 0.000 abs_alt: 0.000] </font>
"""

# Mavic 2: spaces before the colon and the "longtitude" misspelling.
MAVIC_2 = """1
00:00:00,000 --> 00:00:00,033
<font size="36">SrtCnt : 1, DiffTime : 33ms
2019-03-10 11:20:30,123,456
[iso : 100] [shutter : 1/500.0] [fnum : 280] [ev : 0] [ct : 5500] [color_md : default] [focal_len : 280] [latitude : 39.123456] [longtitude : -3.654321] [altitude: 630.120000] </font>
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flight.SRT"
    path.write_text(text, encoding="utf-8")
    return path


def test_air2s_modern_dialect():
    frames = read_srt(DATA / "air2s.srt")
    assert len(frames) == 17
    first = frames[0]
    assert (first.index, first.start, first.end) == (1, timedelta(0), timedelta(milliseconds=33))
    assert (first.pose.lat, first.pose.lon, first.pose.abs_alt_m) == (41.424724, 2.234156, 117.0)
    assert first.pose.time == datetime(2022, 8, 7, 13, 40, 40, 774808)
    assert first.pose.source == "srt"
    assert frames[-1].pose.lat == 41.424730 and frames[-1].start == timedelta(milliseconds=533)


@pytest.mark.parametrize(
    ("name", "count", "lat", "lon", "rel_alt"),
    [
        # GPS (lon, lat, satellites) with H = height above take-off.
        ("mavic_mini.SRT", 117, 48.0771, -121.7458, 200.70),
        ("legacy_gps.srt", 3, 27.7716, -82.6669, 0.0),
        ("p4_rtk.SRT", 55, -34.237922, -58.851745, 85.80),
    ],
)
def test_legacy_dialect_real_files(name, count, lat, lon, rel_alt):
    frames = read_srt(DATA / name)
    assert len(frames) == count
    assert [f.index for f in frames] == list(range(1, count + 1))
    pose = frames[0].pose
    assert (pose.lat, pose.lon, pose.rel_alt_m) == (lat, lon, rel_alt)
    assert frames[1].start == timedelta(seconds=1) and frames[1].end == timedelta(seconds=2)


def test_p4_rtk_gimbal_pitch_and_yaw():
    # G.PRY (-24.4°, 0.0°, 110.4°) is gimbal pitch, roll, yaw; F.PRY (the aircraft) is ignored.
    pose = read_srt(DATA / "p4_rtk.SRT")[0].pose
    assert (pose.pitch_deg, pose.yaw_deg) == (-24.4, 110.4)


def test_modern_dialect_rel_abs_alt_gimbal_and_no_fix(tmp_path):
    first, second = read_srt(_write(tmp_path, MODERN))
    pose = first.pose
    assert (pose.lat, pose.lon, pose.rel_alt_m, pose.abs_alt_m) == (40.416775, -3.703790, 45.3, 712.45)
    assert (pose.yaw_deg, pose.pitch_deg) == (pytest.approx(189.5), -60.0)
    assert pose.time == datetime(2023, 4, 1, 10, 15, 30, 123000)
    # Before GPS lock: the entry stays (frame i <-> entry i) without a pose.
    assert second.index == 2 and second.pose is None


def test_mavic_2_longtitude_spelling(tmp_path):
    (frame,) = read_srt(_write(tmp_path, MAVIC_2))
    assert (frame.pose.lat, frame.pose.lon, frame.pose.abs_alt_m) == (39.123456, -3.654321, 630.12)
    assert frame.pose.time == datetime(2019, 3, 10, 11, 20, 30, 123456)


def test_crlf_and_byte_order_mark(tmp_path):
    path = tmp_path / "windows.srt"
    path.write_bytes(b"\xef\xbb\xbf" + (DATA / "legacy_gps.srt").read_bytes().replace(b"\n", b"\r\n"))
    frames = read_srt(path)
    assert len(frames) == 3 and frames[2].pose.lat == 27.7716


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some notes\n", "no subtitle entries"),
        ("1\n00:00:00,000 --> 00:00:01,000\nISO 100, EV 0\n", "no GPS position"),
        ("1\n00:00:00,000 --> 00:00:01,000\n[latitude: 95.0] [longitude: 3.0]\n", "entry 1: latitude 95.0"),
    ],
)
def test_unusable_srt_raises(tmp_path, text, message):
    with pytest.raises(InputFileError, match=message):
        read_srt(_write(tmp_path, text))


def test_missing_srt_raises(tmp_path):
    with pytest.raises(InputFileError, match="nothing.srt"):
        read_srt(tmp_path / "nothing.srt")


def _entries(count: int, seconds: float) -> list[SrtFrame]:
    step = timedelta(seconds=seconds)
    return [SrtFrame(i + 1, i * step, (i + 1) * step, None) for i in range(count)]


def test_frames_for_srt_one_frame_per_entry_sorted_by_number():
    entries = _entries(12, 1.0)
    names = ["clip/frame_10.jpg", "clip/frame_2.jpg", "clip/frame_1.jpg"]  # unpadded: 10 sorts last
    pairs = frames_for_srt(names, entries)
    assert [(p.name, e.index) for p, e in pairs] == [("frame_1.jpg", 1), ("frame_2.jpg", 2), ("frame_10.jpg", 10)]
    # Zero-based numbering (OpenCV scripts) is start_number=0.
    assert frames_for_srt(["f_0000.png"], entries, start_number=0)[0][1].index == 1


def test_frames_for_srt_with_extraction_fps():
    entries = _entries(10, 1.0)  # one entry per second, 10 s of video
    # Extracted at 2 fps: frame n shows t = (n - 1) / 2 s.
    pairs = frames_for_srt([f"frame_{n:04d}.jpg" for n in (1, 2, 3, 20)], entries, fps=2.0)
    assert [e.index for _, e in pairs] == [1, 1, 2, 10]
    with pytest.raises(InputFileError, match="frame 21 has no SRT entry"):
        frames_for_srt(["frame_0021.jpg"], entries, fps=2.0)  # t = 10 s: past the end


def test_frames_for_srt_rejects_unnumbered_or_surplus_frames():
    entries = _entries(3, 1.0)
    with pytest.raises(InputFileError, match="no frame number"):
        frames_for_srt(["cover.jpg"], entries)
    with pytest.raises(InputFileError, match="frame 4 has no SRT entry"):
        frames_for_srt(["frame_4.jpg"], entries)
    with pytest.raises(UsageError, match="fps"):
        frames_for_srt(["frame_1.jpg"], entries, fps=0)


def test_real_air2s_frames_at_video_rate():
    # The Air 2S writes one entry per video frame (~30 fps); frame 17 at 30 fps is t = 0.533 s.
    entries = read_srt(DATA / "air2s.srt")
    [(_, entry)] = frames_for_srt(["frame_0017.jpg"], entries, fps=30.0)
    assert entry.index == 17 and entry.pose.lon == 2.234102
