"""Shared CLI pieces: error handling, the --shape option, and the one output sink."""

from __future__ import annotations

import math
import sys

import click

from mlc.compiler.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, MlcError
from mlc.compiler.safe_io import dump_json


def handle_errors(app, args: list[str] | None = None) -> None:
    """Run the click app on `args` (default: sys.argv) and end with the documented exit code:
    0 ok, 1 bad input (one line), 2 usage, 3 a negative verdict, 70 an mlc bug, 130 Ctrl-C.
    Tracebacks only with --debug."""
    debug = "--debug" in (sys.argv[1:] if args is None else args)
    try:
        app.main(args=args, prog_name="mlc", standalone_mode=False)
    except click.exceptions.Abort as err:
        if not isinstance(err.__cause__, EOFError):  # click turns EOFError into Abort too
            interrupted()
        if debug:
            raise
        internal_error(err.__cause__)
    except KeyboardInterrupt:
        interrupted()
    except click.ClickException as err:
        err.show()
        sys.exit(EXIT_USAGE)
    except MlcError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except Exception as err:  # an mlc bug: still one line unless asked for the traceback
        if debug:
            raise
        internal_error(err)


def interrupted() -> None:
    """Ctrl-C: one line and exit 130 (outputs are written atomically, so nothing is half done)."""
    click.echo("mlc: interrupted (nothing was written)", err=True)
    sys.exit(EXIT_INTERRUPTED)


def internal_error(err: BaseException) -> None:
    """An mlc bug: one line that asks for a report, exit 70."""
    click.echo(f"internal error: {type(err).__name__}: {err} (rerun with --debug for the "
               "traceback, and please report it)", err=True)
    sys.exit(EXIT_INTERNAL)


MAX_SHAPE_ELEMENTS = 2**62  # numpy sizes are int64; `mlc run` also checks available memory


def parse_shapes(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """--shape NAME=2x16 (repeatable) -> {"NAME": (2, 16)}; NAME= is a scalar.

    Dims are whole numbers >= 1 (an empty dim has nothing to compile for), written in decimal
    digits only: "-1", "1.5", "2e3" and "0" are refused, never truncated or reinterpreted."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        if not sep or not name:
            raise MlcError(f"--shape {value!r}: expected NAME=DIMS like input_ids=2x16")
        texts = dims.split("x") if dims else []
        bad = [text for text in texts if not (text.isascii() and text.isdigit())]
        if bad:
            raise MlcError(f"--shape {value!r}: dim {bad[0]!r} is not a whole number; expected "
                           "NAME=DIMS like input_ids=2x16")
        shape = tuple(int(text) for text in texts)
        if 0 in shape:
            raise MlcError(f"--shape {value!r}: dims must be at least 1")
        if math.prod(shape) > MAX_SHAPE_ELEMENTS:
            raise MlcError(f"--shape {value!r}: more than 2^62 elements, more than any tensor "
                           "can hold")
        if name in shapes and shapes[name] != shape:
            raise MlcError(f"--shape {value!r}: {name!r} is already given as "
                           f"{'x'.join(map(str, shapes[name]))}")
        shapes[name] = shape
    return shapes


shape_option = click.option(
    "--shape", "shapes", multiple=True, metavar="NAME=DIMS",
    help="Fix an input's shape, e.g. --shape input_ids=2x16 (repeatable).")

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the machine-readable report as JSON on stdout.")


def emit(as_json: bool, doc: dict, text: str) -> None:
    """The one output sink: JSON document or human text on stdout."""
    click.echo(dump_json(doc, indent=1) if as_json else text)


class FiniteFloat(click.FloatRange):
    """A float option that must be finite and in range: click's FloatRange lets NaN through
    (every comparison with NaN is false) and accepts inf when unbounded.

    >>> @click.option("--lr", type=FiniteFloat(min=0, min_open=True))  # doctest: +SKIP
    """

    name = "finite number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


force_option = click.option(
    "--force", is_flag=True,
    help="Replace --out even when it holds files mlc did not write (they are deleted).")
