"""Bounded readers for files a user hands to mlc, and checks for the numbers inside them.

Every JSON reader in mlc goes through `read_json` / `parse_json`: size-capped, UTF-8 checked,
nesting bounded (so a hostile file gives a clear error instead of a RecursionError), NaN and
Infinity refused. `check_number` validates one numeric field or option, naming where it is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import MlcError

MAX_JSON_BYTES = 256 * 2**20
MAX_JSON_DEPTH = 64


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows (use a finite value)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ValueError(f"{text[:20]} overflows a float (use a finite value)")
    return value


def parse_json(text: str | bytes, where: str, max_depth: int = MAX_JSON_DEPTH):
    """Parse JSON text; any problem is an MlcError that names `where` (file, file:line, ...).

    >>> parse_json('{"a": [1, 2]}', "demo.json")
    {'a': [1, 2]}
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MlcError(f"{where}: not UTF-8 text (byte {err.start}); expected a JSON "
                           "file") from None
    try:
        doc = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise MlcError(f"{where}: JSON nested too deeply (the limit is {max_depth} "
                       "levels)") from None
    except ValueError as err:  # JSONDecodeError included
        raise MlcError(f"{where}: not valid JSON ({err})") from None
    depth = json_depth(doc)
    if depth > max_depth:
        raise MlcError(f"{where}: JSON nested {depth} levels deep (the limit is {max_depth})")
    return doc


def read_json(path, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH):
    """Read and parse a JSON file with the bounds of `parse_json` and a size cap."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise MlcError(f"{path}: is not a file; expected a {what}")
        if size > max_bytes:
            raise MlcError(f"{path}: {size:,} bytes, larger than any {what} mlc reads "
                           f"({max_bytes:,} bytes)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise MlcError(f"{path}: no such file (expected a {what})") from None
    except IsADirectoryError:
        raise MlcError(f"{path}: is a directory; expected a {what}") from None
    except OSError as err:
        raise MlcError(f"{path}: cannot read ({err.strerror or err})") from None
    return parse_json(data, str(path), max_depth)


def json_depth(doc) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), computed without recursion."""
    deepest, stack = 0, [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth + 1)
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return deepest


def check_number(value, where: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, integer: bool = False):
    """Return `value` if it is a finite number in [low, high] (open at `low` when asked).

    `where` names the field, e.g. "demand.json: models[2].rate". Booleans are not numbers.

    >>> check_number(3, "x", low=0)
    3
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MlcError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MlcError(f"{where}: {value} is not a finite number")
    if integer and value != int(value):
        raise MlcError(f"{where}: expected a whole number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"greater than {_plain(low)}" if low_open else f"at least {_plain(low)}"
        raise MlcError(f"{where}: {value!r} must be {bound}")
    if high is not None and value > high:
        raise MlcError(f"{where}: {value!r} must be at most {_plain(high)}")
    return int(value) if integer else value


def _plain(bound: float) -> str:
    """1048576 -> '1048576'; 0.5 -> '0.5' (no exponent notation in messages)."""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def dump_json(doc, **kwargs) -> str:
    """`json.dumps` that refuses NaN / Infinity, so mlc never writes invalid JSON."""
    try:
        return json.dumps(doc, allow_nan=False, **kwargs)
    except ValueError as err:
        raise MlcError(f"a result is not finite ({err}); nothing was written") from None
