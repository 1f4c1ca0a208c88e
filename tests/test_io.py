"""Outputs written whole or not at all, checked before the work, and one writer at a time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from smgeo_cli.errors import InputFileError, UsageError
from smgeo_cli.io import (
    check_writable,
    output_lock,
    recover_folder,
    replace_atomically,
    replace_folder,
    write_text_atomic,
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "preview.png"
    stale = tmp_path / f".preview.{_dead_pid()}-{'a' * 32}.tmp.png"  # as a SIGKILL'd preview leaves it
    live = tmp_path / f".preview.{os.getpid()}-{'b' * 32}.tmp.png"  # another writer, still at work
    other = tmp_path / f".map.{_dead_pid()}-{'c' * 32}.tmp.png"  # a temporary file of another output
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and live.exists() and other.exists()


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.geojson"
    target.write_text("old")
    with pytest.raises(RuntimeError), replace_atomically(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.geojson"]


@pytest.mark.parametrize(
    ("where", "message"),
    # /proc takes no new file, whoever asks (a read-only folder would not stop root, which CI may run as).
    [("folder", "is a folder"), ("missing/out.geojson", "does not exist"), ("/proc/x.geojson", "cannot write")],
)
def test_unwritable_outputs_are_caught_before_the_work(tmp_path, where, message):
    (tmp_path / "folder").mkdir()
    path = tmp_path / where  # an absolute `where` replaces tmp_path
    with pytest.raises(InputFileError, match=message):
        check_writable(path)
    with pytest.raises(InputFileError, match=message):
        write_text_atomic(path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_second_run_on_one_output_is_refused_and_a_dead_holder_blocks_nothing(tmp_path):
    output = tmp_path / "flight.geojson"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from smgeo_cli.io import output_lock\n"
         f"with output_lock({str(output)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UsageError, match="being written by another smgeo run"), output_lock(output):
        pass
    holder.kill()
    holder.wait()
    with output_lock(output):  # the operating system released the killed holder's lock
        assert (tmp_path / "flight.geojson.lock").exists()
    assert not (tmp_path / "flight.geojson.lock").exists()


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "last"
    with replace_folder(folder) as new:
        (new / "weights").write_text("1")
        (new / "state").write_text("1")
    with pytest.raises(RuntimeError), replace_folder(folder) as new:
        (new / "weights").write_text("2")
        raise RuntimeError("killed between the two files")
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"weights": "1", "state": "1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_crash_between_the_renames_is_recovered(tmp_path):
    folder = tmp_path / "last"
    aside = tmp_path / ".last.old"  # the previous checkpoint moved aside, the new one not yet in place
    aside.mkdir()
    (aside / "weights").write_text("1")
    (tmp_path / ".last.new").mkdir()
    assert recover_folder(folder) == folder
    assert (folder / "weights").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["last"]
