"""The ``smgeo`` command line: parses, calls the library, prints.

Each command lives in its own module under :mod:`smgeo_cli.commands`; options
shared by several commands are in :mod:`smgeo_cli.commands.options`. Command
modules import the library (torch, OpenCV, rasterio) inside their
command functions, so ``smgeo --help`` and usage errors never load it.

:func:`main` is the only place that turns exceptions into what the user sees:
one line on stderr and the exit code documented in the README, never a
traceback unless asked for with ``--debug`` or ``SMGEO_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from types import FrameType

import typer

from smgeo_cli import __version__
from smgeo_cli.commands import batch_cmd, eval_cmd, info_cmd, locate_cmd, mine_cmd, synth_cmd, toy_cmd, train_cmd
from smgeo_cli.errors import (
    INTERNAL_ERROR_EXIT,
    INTERRUPTED_EXIT,
    TERMINATED_EXIT,
    SmgeoError,
    SmgeoWarning,
    describe_exception,
)

DEBUG_ENV = "SMGEO_DEBUG"
# Click's error base class, wherever this Typer takes Click from (newer ones vendor it as typer._click).
ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")

app = typer.Typer(
    name="smgeo",
    help="Find the object clicked on a drone photo in a georeferenced satellite or aerial image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: Rich's would import its Markdown renderer, a third of the time `--help` takes.
    rich_markup_mode=None,
)
for module in (locate_cmd, batch_cmd, train_cmd, eval_cmd, info_cmd, toy_cmd, synth_cmd, mine_cmd):
    module.register(app)


class Terminated(SystemExit):
    """SIGTERM, raised as an exception so that ``finally`` blocks remove temporary files and close journals."""


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smgeo {__version__}")
        raise typer.Exit()


def _debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, SmgeoWarning):
        print(f"smgeo: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)


def _quiet_libraries(debug: bool) -> None:
    """Show smgeo's own warnings as one line each; library warnings and GDAL's log lines only under --debug."""
    warnings.showwarning = _show_warning
    if debug:
        warnings.simplefilter("default")
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
        return
    warnings.simplefilter("ignore")
    warnings.simplefilter("default", SmgeoWarning)
    # Without a handler anywhere, Python prints library log records (rasterio's GDAL messages) to stderr.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(
        False, "--debug", help=f"Show library warnings, and the traceback of an unexpected error (or set {DEBUG_ENV}=1)."
    ),
) -> None:
    """smgeo: cross-view object geo-localisation (SMGeo model and SIFT matching)."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
        _quiet_libraries(debug=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(TERMINATED_EXIT)


def _fail(message: str, code: int) -> None:
    print(f"smgeo: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point: user errors become one line on stderr and their exit code, never a traceback."""
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    _quiet_libraries(_debug_requested())
    try:
        # "smgeo" in usage lines and hints, under `python -m smgeo_cli` and torchrun too.
        code = app(prog_name="smgeo", standalone_mode=False)
    except SmgeoError as exc:
        _fail(f"error: {exc}", exc.exit_code)
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `smgeo` alone: the help, as Click shows it
            exc.show()
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if getattr(exc, "ctx", None) else "smgeo"
        _fail(f"error: {exc.format_message()} (see '{where} --help')", exc.exit_code)
    except typer.Abort:
        _fail("interrupted", INTERRUPTED_EXIT)
    except Terminated:
        _fail("terminated", TERMINATED_EXIT)
    except BrokenPipeError:
        # The reader of our stdout went away (`smgeo ... | head`): nothing more to say, and nowhere to say it.
        sys.stdout = open(os.devnull, "w")
        sys.exit(1)
    except MemoryError:
        if _debug_requested():
            raise
        _fail(
            "error: out of memory; lower --batch-size, search a smaller area (--search-radius, --bbox) "
            "or use smaller images",
            INTERNAL_ERROR_EXIT,
        )
    except Exception as exc:
        if _debug_requested():
            raise
        _fail(
            f"internal error: {describe_exception(exc)}. This is a bug in smgeo: please run again with "
            f"`smgeo --debug ...` (or {DEBUG_ENV}=1) and report the traceback",
            INTERNAL_ERROR_EXIT,
        )
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    # Typer turns Ctrl-C into exit code 130 without a word: say what happened.
    if code == INTERRUPTED_EXIT:
        _fail("interrupted", INTERRUPTED_EXIT)
    sys.exit(code or 0)
