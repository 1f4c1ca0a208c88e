"""The ``smgeo`` command line: parses, calls the library, prints.

Each command lives in its own module under :mod:`smgeo_cli.commands`; options
shared by several commands are in :mod:`smgeo_cli.commands.options`.
"""

from __future__ import annotations

import sys

import typer

from smgeo_cli import __version__
from smgeo_cli.commands import batch_cmd, eval_cmd, info_cmd, locate_cmd, synth_cmd, toy_cmd, train_cmd
from smgeo_cli.errors import SmgeoError

app = typer.Typer(
    name="smgeo",
    help="Find the object clicked on a drone photo in a georeferenced satellite or aerial image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (locate_cmd, batch_cmd, train_cmd, eval_cmd, info_cmd, toy_cmd, synth_cmd):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smgeo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """smgeo: cross-view object geo-localisation (SMGeo model and SIFT matching)."""


def main() -> None:
    """Entry point: user errors become one line on stderr and their exit code, never a traceback."""
    try:
        app()
    except SmgeoError as exc:
        typer.echo(f"smgeo: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("smgeo: interrupted", err=True)
        sys.exit(130)
