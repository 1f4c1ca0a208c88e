"""What the commands that write training pairs (``synth``, ``mine``) show: a bar advancing per pair, and a closing line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from smgeo_cli.commands.progress import progress_bar


@contextmanager
def pair_progress(quiet: bool, description: str, total: int) -> Iterator[Callable[..., None]]:
    """Yield update(advance=0, info=...): moves the bar on by ``advance`` pairs and shows ``info``; does nothing
    when progress is off."""
    with progress_bar(quiet) as progress:
        if progress is None:
            yield lambda advance=0, info="": None
            return
        task = progress.add_task(description, total=total, info="")
        yield lambda advance=0, info="": progress.update(task, advance=advance, info=info)


def pairs_written(counts: dict[str, int], fallbacks: int, out: Path, fits: str = "") -> str:
    """The closing line: pairs per split, then ``fits`` (how image matching went) when given, fallbacks and where."""
    parts = [", ".join(f"{split}: {count} pairs" for split, count in counts.items())]
    if fits:
        parts.append(fits)
    return "; ".join([*parts, f"{fallbacks} random fallback boxes", f"written to {out}"])
