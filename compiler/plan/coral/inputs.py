"""Reading a serving plan's inputs: the demand file and the GPU override file (JSON, or YAML
when PyYAML is installed), checked field by field with errors that say what to fix."""

from __future__ import annotations

import math
from pathlib import Path

from mlc.compiler.errors import MlcError
from mlc.compiler.safe_io import MAX_JSON_DEPTH, check_number, read_json

from ..models import list_models
from .perf import Workload

# field: (type, least, most). The upper bounds are far beyond any real deployment; they keep
# a typo (1e300 requests/s) from reaching the MILP as a number it cannot scale.
DEMAND_FIELDS = {"requests_per_s": (float, 0, 1e7), "prompt_tokens": (int, 0, 1_000_000),
                 "output_tokens": (int, 0, 1_000_000), "tpot_ms": (float, 0, 3.6e6),
                 "ttft_ms": (float, 0, 3.6e6), "weight": (float, 0, 1e9)}
POSITIVE = ("prompt_tokens", "output_tokens", "tpot_ms", "ttft_ms", "weight")  # > 0; rate >= 0
REQUIRED = ("requests_per_s", "prompt_tokens", "output_tokens")
MAX_YAML_BYTES = 16 * 2**20  # a demand or GPU file is a few lines; YAML parsing is slow


def load_document(path: str | Path, what: str) -> dict:
    """A JSON or YAML file as a dict (YAML only if PyYAML is importable), read through the
    bounded readers of `mlc.compiler.safe_io`: size cap, UTF-8, nesting depth; a YAML document
    must also be plain JSON data (string keys, no dates or binary), and NaN / Infinity (YAML's
    `.nan` / `.inf`) are refused wherever they appear."""
    path = Path(path)
    if not path.exists():
        raise MlcError(f"{what} file {path} does not exist")
    if not path.is_file():  # a folder, a FIFO, /dev/zero: never read those
        raise MlcError(f"{path}: is not a regular file; expected a {what} file")
    if path.suffix.lower() in (".yaml", ".yml"):
        doc = _load_yaml(path, what)
    else:
        doc = read_json(path, f"{what} file (JSON)")
    if not isinstance(doc, dict) or not doc:
        raise MlcError(f"{path}: expected a non-empty mapping of names to settings")
    return doc


def _load_yaml(path: Path, what: str):
    """safe_load (no python tags) of a size-capped file, then checked to be JSON data."""
    try:
        import yaml
    except ImportError:
        raise MlcError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or give "
                       "the same content as JSON") from None
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise MlcError(f"{path}: {size:,} bytes, larger than any {what} file mlc reads "
                           f"({MAX_YAML_BYTES:,} bytes)")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise MlcError(f"{path}: not UTF-8 text (byte {err.start}); expected a YAML "
                       f"{what} file") from None
    except OSError as err:
        raise MlcError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        doc = yaml.safe_load(text)
    except RecursionError:
        raise MlcError(f"{path}: YAML nested too deeply (the limit is {MAX_JSON_DEPTH} "
                       "levels)") from None
    except yaml.YAMLError as err:
        raise MlcError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    except ValueError as err:  # e.g. an integer literal longer than Python converts
        raise MlcError(f"{path}: a value in this YAML file cannot be read ({err})") from None
    _check_plain_data(doc, str(path))
    return doc


def _check_plain_data(doc, where: str) -> None:
    """MlcError unless `doc` is JSON data: dicts with string keys, lists, strings, finite
    numbers, booleans, null; nested at most MAX_JSON_DEPTH levels; no container reached twice
    (YAML aliases: an alias bomb would take exponential time to walk, a cycle forever)."""
    stack, seen = [(doc, "", 0)], set()
    while stack:
        value, at, depth = stack.pop()
        here = f"{where}: {at}" if at else where
        if depth > MAX_JSON_DEPTH:
            raise MlcError(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(value, (dict, list)):
            if id(value) in seen:
                raise MlcError(f"{here}: repeats a YAML anchor (*alias); write the values out")
            seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise MlcError(f"{here}: key {key!r} is not a string; quote it")
                stack.append((item, f"{at}.{key}" if at else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{at}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise MlcError(f"{here}: {value} is not a finite number")
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise MlcError(f"{here}: {type(value).__name__} value {value!r} is not plain "
                           "data; quote it as a string or give a number")


def parse_demand(doc: dict, where: str = "demand") -> dict[str, Workload]:
    """`{model: {requests_per_s, prompt_tokens, output_tokens[, tpot_ms, ttft_ms, weight]}}`,
    every field a finite number in its range (errors name the file, model and field)."""
    if not isinstance(doc, dict) or not doc:
        raise MlcError(f"{where}: expected a non-empty mapping of model names to demand")
    known = list_models()
    unknown = [name for name in doc if name not in known]
    if unknown:
        raise MlcError(f"{where}: unknown model(s) {', '.join(map(repr, unknown))}; known "
                       f"models: {', '.join(known)}")
    demand = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            raise MlcError(f"{where}: {name}: expected {{requests_per_s, prompt_tokens, "
                           "output_tokens}")
        extra = sorted(set(entry) - set(DEMAND_FIELDS))
        missing = [key for key in REQUIRED if key not in entry]
        if extra or missing:
            raise MlcError(f"{where}: {name}: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown field(s) {', '.join(extra)}"] if extra else []))
                + f" (fields: {', '.join(DEMAND_FIELDS)})")
        values = {key: _demand_number(entry[key], key, f"{where}: {name}.{key}")
                  for key in entry}
        demand[name] = Workload(
            requests_per_s=values["requests_per_s"], prompt_tokens=values["prompt_tokens"],
            output_tokens=values["output_tokens"],
            tpot_slo_s=values.get("tpot_ms", 100.0) / 1e3,
            ttft_slo_s=values.get("ttft_ms", 5000.0) / 1e3,
            weight=values.get("weight", values["requests_per_s"]))
    return demand


def _demand_number(value, key: str, where: str):
    """One demand field checked against its row of DEMAND_FIELDS (type, finite, range)."""
    kind, low, high = DEMAND_FIELDS[key]
    return check_number(value, where, low=low, high=high, low_open=key in POSITIVE,
                        integer=kind is int)


def demand_document(demand: dict[str, Workload]) -> dict:
    """The inverse of `parse_demand` (stored in plan.json so --replan can reuse it)."""
    return {name: {"requests_per_s": w.requests_per_s, "prompt_tokens": w.prompt_tokens,
                   "output_tokens": w.output_tokens, "tpot_ms": w.tpot_slo_s * 1e3,
                   "ttft_ms": w.ttft_slo_s * 1e3, "weight": w.weight}
            for name, w in demand.items()}
