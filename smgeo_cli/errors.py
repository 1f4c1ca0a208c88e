"""Errors a user can fix, each with the exit code the command line returns for it.

Library code raises these with a message that names the file or value at fault
and, where there is one, the fix; the command line prints the message as one
line on stderr and exits with the code. Anything else is a bug: the command
line reports it in one line with exit code ``INTERNAL_ERROR_EXIT`` and shows
the traceback only when asked (``smgeo --debug`` or ``SMGEO_DEBUG=1``).
"""

from __future__ import annotations

# A batch finished but some of its queries failed (listed in its errors file).
SOME_FAILED_EXIT = 1
# An unexpected error: a bug in smgeo or a resource running out (sysexits' EX_SOFTWARE).
INTERNAL_ERROR_EXIT = 70
# Ctrl-C (SIGINT) and SIGTERM, as shells report a process killed by them (128 + signal number).
INTERRUPTED_EXIT = 130
TERMINATED_EXIT = 143


def describe_exception(exc: BaseException) -> str:
    """An unexpected exception in one line: its type, then its message with line breaks folded."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SmgeoError(Exception):
    """Base class: a problem with the user's input, not with smgeo."""

    exit_code = 1


class UsageError(SmgeoError):
    """Bad option values or combinations."""

    exit_code = 2


class InputFileError(SmgeoError):
    """A file or folder is missing, unreadable or not in the expected format."""

    exit_code = 3


class GeoreferenceError(SmgeoError):
    """A raster has no usable georeferencing, or a position falls outside it."""

    exit_code = 4


class WeightsError(SmgeoError):
    """Model weights are missing or do not fit their config."""

    exit_code = 5


class NoDataError(SmgeoError):
    """The search area holds no valid pixels."""

    exit_code = 6


class SmgeoWarning(UserWarning):
    """Something the user should know that does not stop the run (skipped records, an unreadable XMP packet).

    The command line prints these as ``smgeo: warning: ...`` lines; warnings
    of other categories (numpy, libraries) are shown only under ``--debug``.
    """
