"""Shared CLI pieces: error handling, the --shape option, and the one output sink."""

from __future__ import annotations

import json
import sys

import click

from mlc.compiler.errors import MlcError


def handle_errors(app, args: list[str] | None = None) -> None:
    """Run the click app on `args` (default: sys.argv); user errors print one line and exit 1
    (traceback only with --debug)."""
    debug = "--debug" in (sys.argv[1:] if args is None else args)
    try:
        app.main(args=args, prog_name="mlc", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2)
    except MlcError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except Exception as err:  # an mlc bug: still one line unless asked for the traceback
        if debug:
            raise
        click.echo(f"internal error: {type(err).__name__}: {err} (rerun with --debug for the "
                   "traceback, and please report it)", err=True)
        sys.exit(1)


def parse_shapes(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """--shape NAME=2x16 (repeatable) -> {"NAME": (2, 16)}."""
    shapes = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split("x")) if dims else ()
        except ValueError:
            raise MlcError(f"--shape {value!r}: expected NAME=DIMS like input_ids=2x16") from None
    return shapes


shape_option = click.option(
    "--shape", "shapes", multiple=True, metavar="NAME=DIMS",
    help="Fix an input's shape, e.g. --shape input_ids=2x16 (repeatable).")

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the machine-readable report as JSON on stdout.")


def emit(as_json: bool, doc: dict, text: str) -> None:
    """The one output sink: JSON document or human text on stdout."""
    click.echo(json.dumps(doc, indent=1) if as_json else text)
