"""Writing output files so that a crash never leaves a half-written one, and locking an output against a second run."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from smgeo_cli.errors import InputFileError, UsageError

if os.name == "nt":
    import msvcrt
else:
    import fcntl


def check_writable(path: str | Path) -> None:
    """InputFileError unless a file can be written at ``path``: before the work, not after it.

    The folder must exist and take a new file (tried, so read-only folders and
    full quotas are caught whoever runs it); ``path`` must not be a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"cannot write {path}: it is a folder; give a file name in it")
    if not path.parent.is_dir():
        raise InputFileError(f"cannot write {path}: folder {path.parent} does not exist")
    probe = _temp_name(path)
    try:
        probe.touch(exist_ok=False)
    except OSError as err:
        raise InputFileError(f"cannot write {path}: {err.strerror or err}") from None
    probe.unlink()


def _temp_name(path: Path) -> Path:
    # Hidden, same folder and suffix (some writers choose the format by it), and the
    # writer's pid, so that a later write can tell a killed writer's leftover from a live one.
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex}.tmp{path.suffix}")


def _process_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, safe check: never remove another writer's file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files of ``path`` left by writers that were killed (SIGKILL gives no chance to clean up)."""
    pattern = re.compile(re.escape(f".{path.stem}.") + r"(\d+)-[0-9a-f]{32}\.tmp" + re.escape(path.suffix))
    with suppress(OSError):
        for candidate in path.parent.iterdir():
            match = pattern.fullmatch(candidate.name)
            if match and not _process_alive(int(match[1])):
                candidate.unlink(missing_ok=True)


@contextmanager
def replace_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it is renamed over ``path``.

    Same folder, so the rename is atomic; same suffix, since some writers
    (OGR drivers, image encoders) choose the format by it. On failure the
    temporary file is removed and ``path`` is left as it was; temporary files
    of killed earlier writers are removed first. Raises InputFileError when
    ``path`` cannot be written (a folder, a missing or read-only folder, a full disk).
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"cannot write {path}: it is a folder; give a file name in it")
    if not path.parent.is_dir():
        raise InputFileError(f"cannot write {path}: folder {path.parent} does not exist")
    _remove_stale_temps(path)
    tmp = _temp_name(path)
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as err:
            raise InputFileError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _folder_copies(folder: Path) -> tuple[Path, Path]:
    """The hidden folders beside ``folder`` that a replacement is written into and that the replaced one moves to."""
    return folder.with_name(f".{folder.name}.new"), folder.with_name(f".{folder.name}.old")


def recover_folder(folder: str | Path) -> Path:
    """``folder`` as the last complete :func:`replace_folder` left it, after a crash at any point of one.

    A crash between its two renames leaves only the previous folder, moved
    aside: it is put back. A half-written replacement is deleted.
    """
    folder = Path(folder)
    staging, previous = _folder_copies(folder)
    if not folder.exists() and previous.is_dir():
        os.replace(previous, folder)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)
    return folder


@contextmanager
def replace_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty folder to write the new contents of ``folder`` into; on success it takes ``folder``'s place.

    Files that must agree (weights and the optimizer state beside them) are
    then replaced together: a crash leaves the old folder or the new one, never
    a mix (:func:`recover_folder` tidies up after one).
    """
    folder = recover_folder(folder)
    staging, previous = _folder_copies(folder)
    staging.mkdir(parents=True)
    try:
        yield staging
        if folder.exists():
            os.replace(folder, previous)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replace_atomically`."""
    with replace_atomically(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _try_lock(fd: int) -> bool:
    try:
        if os.name == "nt":
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Hold ``<output>.lock`` for the duration: a second run on the same output fails at once (UsageError).

    The operating system releases the lock when the process dies, however it
    dies, so a killed run never blocks the next one; the lock file is removed
    on the way out.
    """
    output = Path(output)
    lock = output.with_name(output.name + ".lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputFileError(f"cannot write {lock}: {err.strerror}") from None
        if not _try_lock(fd):
            os.close(fd)
            raise UsageError(
                f"{output} is being written by another smgeo run (it holds {lock}); "
                "wait for it to finish, or write to another output"
            )
        # The holder before us may have removed the file between our open and our lock: lock the one on disk.
        with suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    try:
        yield
    finally:
        if os.name == "nt":
            os.close(fd)
            with suppress(OSError):
                lock.unlink()
        else:
            lock.unlink(missing_ok=True)
            os.close(fd)
