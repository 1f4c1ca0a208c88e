"""DJI SRT telemetry: the subtitle track DJI drones record next to each video.

Each subtitle entry covers one span of the video (one frame on newer models,
one second on older ones) and carries the aircraft's position in one of three
dialects:

- modern (Mini, Air 2S, Mavic 3, ...)::

      [latitude: 41.424724] [longitude: 2.234156] [rel_alt: 1.300 abs_alt: 200.100]

  older firmware writes ``[altitude: 117.0]`` (above sea level) instead of
  rel_alt/abs_alt; some models add ``[gb_yaw: .. gb_pitch: ..]`` gimbal angles.
- Mavic 2: the same, with spaces before the colon and DJI's misspelling
  ``[longtitude : -3.2]``.
- legacy (Phantom 3/4, Mavic Pro, Mavic Mini)::

      GPS (-82.6669, 27.7716, 10), D 2.80m, H 0.00m, ..., G.PRY (-24.4°, 0.0°, 110.4°)

  longitude first; the third number counts satellites (it stays an integer
  while the height changes). H is the height above take-off, G.PRY the gimbal
  pitch, roll and yaw; Mavic Pro writes ``BAROMETER:1.9M`` for the height.

Entries without a position (before GPS lock DJI writes 0, 0) keep ``pose=None``
so that entry i still matches video frame i; so do entries whose position is
impossible (outside WGS84 bounds), with ``problem`` saying so: the frames
they describe fail alone, the rest of the flight is processed.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from os import PathLike
from pathlib import Path
from typing import Iterable, Sequence

from smgeo_cli.errors import InputFileError, UsageError
from smgeo_cli.geo.flightlog import PhotoPose, is_no_fix

__all__ = ["SrtFrame", "frames_for_srt", "read_srt"]

_NUM = r"[-+]?\d+(?:\.\d+)?"
_TIMECODE = r"(\d+):(\d{2}):(\d{2})[,.](\d{1,3})"
_ENTRY_HEAD = re.compile(rf"^[ \t]*(\d+)[ \t]*\r?\n[ \t]*{_TIMECODE}[ \t]*-->[ \t]*{_TIMECODE}[^\n]*$", re.MULTILINE)
_TAG = re.compile(r"<[^>]*>")
_KEY_VALUE = re.compile(rf"([A-Za-z_]+)\s*:\s*({_NUM})")
_DATE = re.compile(r"(\d{4})[-.](\d{1,2})[-.](\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,3})(?:,(\d{1,3}))?)?")
_LEGACY_GPS = re.compile(rf"\bGPS\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*,\s*\d+\s*\)")
_LEGACY_HEIGHT = re.compile(rf"\bH\s+({_NUM})\s*m\b")
_LEGACY_GIMBAL = re.compile(rf"\bG\.PRY\s*\(\s*({_NUM})°?\s*,\s*{_NUM}°?\s*,\s*({_NUM})°?\s*\)")

# Modern-dialect keys (lower case) for each PhotoPose field, in order of preference.
_MODERN_KEYS = {
    "lat": ("latitude",),
    "lon": ("longitude", "longtitude"),
    "rel_alt_m": ("rel_alt", "barometer"),
    "abs_alt_m": ("abs_alt", "altitude"),
    "yaw_deg": ("gb_yaw",),
    "pitch_deg": ("gb_pitch",),
}


@dataclass(frozen=True)
class SrtFrame:
    """One SRT entry: its 1-based subtitle index, the video span it covers, its pose.

    ``problem`` says why an entry that has a position has no pose (the position is impossible).
    """

    index: int
    start: timedelta
    end: timedelta
    pose: PhotoPose | None
    problem: str | None = None


def _timecode(hours: str, minutes: str, seconds: str, millis: str) -> timedelta:
    # Built by arithmetic, not strptime: DJI writes "00:00:60,000" at minute ends.
    millis = int(millis.ljust(3, "0"))
    return timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds), milliseconds=millis)


def _entry_time(text: str) -> datetime | None:
    """The wall-clock line DJI puts in modern entries ("2022-08-07 13:40:40,774,808")."""
    match = _DATE.search(text)
    if match is None:
        return None
    *date_time, millis, micros = match.groups()
    return datetime(*map(int, date_time), microsecond=int((millis or "0").ljust(3, "0")) * 1000 + int(micros or 0))


def _entry_fields(text: str) -> dict:
    """PhotoPose fields from one entry's text (tags removed); no lat/lon if none found."""
    legacy = _LEGACY_GPS.search(text)
    values = {key.lower(): float(value) for key, value in _KEY_VALUE.findall(text)}
    fields = {}
    for field, keys in _MODERN_KEYS.items():
        found = next((values[k] for k in keys if k in values), None)
        if found is not None:
            fields[field] = found
    if legacy is not None:
        fields["lon"], fields["lat"] = float(legacy[1]), float(legacy[2])
        if height := _LEGACY_HEIGHT.search(text):
            fields["rel_alt_m"] = float(height[1])
        if gimbal := _LEGACY_GIMBAL.search(text):
            fields["pitch_deg"], fields["yaw_deg"] = float(gimbal[1]), float(gimbal[2])
    if "lat" in fields and "lon" in fields and is_no_fix(fields["lat"], fields["lon"]):
        del fields["lat"], fields["lon"]
    return fields


def read_srt(path: str | PathLike) -> list[SrtFrame]:
    """All entries of a DJI SRT file, in file order, in any of the three dialects.

    Raises InputFileError when the file cannot be read, holds no subtitle
    entries, or holds no usable position at all (an unknown dialect: better an
    error than a flight with no search prior). An entry whose position is
    impossible gets ``pose=None`` and a ``problem``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read the SRT file ({exc})") from exc
    heads = list(_ENTRY_HEAD.finditer(text))
    if not heads:
        raise InputFileError(f"{path}: no subtitle entries (expected 'N' then 'HH:MM:SS,mmm --> HH:MM:SS,mmm' lines)")
    frames = []
    for head, following in zip(heads, heads[1:] + [None]):
        body = _TAG.sub(" ", text[head.end() : following.start() if following else len(text)])
        fields = _entry_fields(body)
        pose, problem = None, None
        if "lat" in fields and "lon" in fields:
            try:
                pose = PhotoPose(**fields, time=_entry_time(body), source="srt")
            except ValueError as exc:
                problem = str(exc)
        try:
            span = (_timecode(*head.groups()[1:5]), _timecode(*head.groups()[5:9]))
        except OverflowError:
            raise InputFileError(f"{path}: entry {head[1]}: timecode out of range") from None
        frames.append(SrtFrame(int(head[1]), *span, pose, problem))
    if all(frame.pose is None for frame in frames):
        problem = next((f"entry {f.index}: {f.problem}" for f in frames if f.problem), None)
        raise InputFileError(
            f"{path}: no GPS position in any of its {len(frames)} entries"
            + (f" ({problem})" if problem else "; supported: [latitude: ..] [longitude: ..] or GPS (lon, lat, satellites)")
        )
    return frames


def _frame_number(path: Path) -> int:
    numbers = re.findall(r"\d+", path.stem)
    if not numbers:
        raise InputFileError(f"{path}: frame file name has no frame number (expected e.g. frame_0001.jpg)")
    return int(numbers[-1])


def frames_for_srt(
    frames: Iterable[str | PathLike],
    entries: Sequence[SrtFrame],
    fps: float | None = None,
    start_number: int = 1,
) -> list[tuple[Path, SrtFrame]]:
    """Pair frames extracted from a video with the SRT entries describing them.

    A frame's number is the last run of digits in its file name (frame_0042.jpg
    -> 42); frames come back sorted by it. `start_number` is the number of the
    video's first frame (ffmpeg's default is 1, as in ``ffmpeg -i v.mp4 -r 2
    frame_%04d.jpg``).

    - `fps` given (the rate frames were extracted at): frame n shows video time
      ``(n - start_number) / fps`` seconds and gets the entry whose span holds it.
    - `fps` None: one frame per entry, frame n gets the (n - start_number)-th entry.

    Raises InputFileError for a frame with no number or one past the end of the
    SRT, UsageError for fps <= 0. The pose of a returned entry may be None (no
    GPS fix at that moment).
    """
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"fps must be a positive number, got {fps}")
    if not entries:
        raise ValueError("no SRT entries to match frames to")
    starts = [entry.start.total_seconds() for entry in entries]
    pairs = []
    for number, frame in sorted((_frame_number(Path(f)), Path(f)) for f in frames):
        offset = number - start_number
        if fps is None:
            position = offset
        else:
            seconds = offset / fps
            position = bisect.bisect_right(starts, seconds) - 1
            if position == len(entries) - 1 and seconds >= entries[-1].end.total_seconds():
                position = len(entries)
        if not 0 <= position < len(entries):
            raise InputFileError(
                f"{frame}: frame {number} has no SRT entry ({len(entries)} entries, "
                f"{entries[-1].end.total_seconds():.3f} s); check fps and start_number"
            )
        pairs.append((frame, entries[position]))
    return pairs
