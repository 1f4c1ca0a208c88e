"""Writing output files so that a crash never leaves a half-written one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smgeo_cli.errors import InputFileError


@contextmanager
def replace_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it is renamed over ``path``.

    Same folder, so the rename is atomic; same suffix, since some writers
    (OGR drivers, image encoders) choose the format by it. On failure the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputFileError(f"cannot write {path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replace_atomically`."""
    with replace_atomically(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
