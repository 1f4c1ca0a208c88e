"""Errors a user can fix, each with the exit code the command line returns for it.

Library code raises these with a message that names the file or value at fault
and, where there is one, the fix; the command line prints the message as one
line on stderr and exits with the code. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


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
