"""µGraph JSON (our own format, schema in specs/schemas/mugraph.schema.json).

The loader is strict, because µGraph files come from users, caches and artifacts and their
numbers end up in generated kernel source: every field has its JSON type (an integer is an
int, never a bool or a float), every size is positive and bounded, every name of an op, dtype
or kind comes from a known set, every map entry is a dim or NO_DIM, and unknown fields are
refused. A malformed document raises MuGraphError naming the JSON path of the bad field, e.g.
`kernels[0].block.grid[0]: expected an integer, got true`. Shape rules (tiles that divide,
maps within a tensor's rank) are checked by model.kernel_shapes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .model import (
    DTYPE_BYTES,
    NO_DIM,
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    KernelOp,
    MuGraph,
)
from .ops import BLOCK_OPS, LIBRARY_OPS, MuGraphError

FORMAT_VERSION = 1
MAX_RANK = 8  # tensor rank, and so the largest map entry + 1
MAX_DIM = 2**31 - 1  # one tensor dim (generated kernels index with 32-bit offsets per dim)
MAX_GRID = 65535  # blocks along one grid axis (CUDA's limit for the y and z axes)
MAX_FORLOOP = 2**20
MAX_THREADS = 1024  # per block, every NVIDIA GPU's limit
MAX_NAME = 256  # characters of a tensor, tile or kernel name
MAX_ITEMS = 4096  # inputs, kernels, tile ops, ... in one list

_GRAPH_FIELDS = {"format_version", "kind", "name", "dtype", "inputs", "kernels", "outputs"}
_KERNEL_FIELDS = {"name", "op", "inputs", "outputs", "attrs", "block"}
_BLOCK_FIELDS = {"grid", "forloop_range", "reduction_dimx", "threads", "inputs", "ops",
                 "outputs"}


# ---- typed field readers (each error names the JSON path) ----------------------------------

def _object(value, where: str, fields: set[str]) -> dict:
    """A JSON object whose keys are all among `fields`."""
    if not isinstance(value, dict):
        raise MuGraphError(f"{where}: expected an object, got {_show(value)}")
    unknown = sorted(map(str, set(value) - fields))
    if unknown:
        known = f"known: {', '.join(sorted(fields))}" if fields else "it takes none"
        raise MuGraphError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; {known}")
    return value


def _field(obj: dict, key: str, where: str, default=...):
    if key in obj:
        return obj[key]
    if default is ...:
        raise MuGraphError(f"{where}: missing field {key!r}")
    return default


def _int(value, where: str, low: int, high: int) -> int:
    """An integer (not a bool, not a float) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MuGraphError(f"{where}: expected an integer, got {_show(value)}")
    if not low <= value <= high:
        raise MuGraphError(f"{where}: {value} is outside [{low}, {high}]")
    return value


def _name(value, where: str, shortest: int = 1) -> str:
    if not isinstance(value, str) or not shortest <= len(value) <= MAX_NAME:
        raise MuGraphError(f"{where}: expected a name (a string of {shortest} to {MAX_NAME} "
                           f"characters), got {_show(value)}")
    return value


def _list(value, where: str, low: int = 0, high: int = MAX_ITEMS) -> list:
    if not isinstance(value, list):
        raise MuGraphError(f"{where}: expected a list, got {_show(value)}")
    if not low <= len(value) <= high:
        raise MuGraphError(f"{where}: {len(value)} entries; expected {low} to {high}")
    return value


def _names(value, where: str, low: int = 0) -> tuple[str, ...]:
    return tuple(_name(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where, low)))


def _choice(value, where: str, known) -> str:
    if not isinstance(value, str) or value not in known:
        raise MuGraphError(f"{where}: {_show(value)} is not one of {', '.join(known)}")
    return value


def _triple(value, where: str, low: int, high: int) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise MuGraphError(f"{where}: expected three integers, got {_show(value)}")
    return tuple(_int(v, f"{where}[{i}]", low, high) for i, v in enumerate(value))


def _attrs(value, where: str, row) -> dict:
    """An op's attributes: only those its row declares, each of the declared default's kind
    (`dim`: an integer within any rank; `scale`: a finite number; `approximate`: none|tanh)."""
    attrs = dict(_object(value, where, set(row.attrs)))
    for key, given in attrs.items():
        if key == "dim":
            _int(given, f"{where}.dim", -MAX_RANK, MAX_RANK - 1)
        elif isinstance(row.attrs[key], float):
            if isinstance(given, bool) or not isinstance(given, (int, float)) or \
                    not math.isfinite(given):
                raise MuGraphError(f"{where}.{key}: expected a finite number, got "
                                   f"{_show(given)}")
            attrs[key] = float(given)
        elif key == "approximate":  # GELU's form, as ONNX spells it
            if given not in ("none", "tanh"):
                raise MuGraphError(f"{where}.approximate: expected \"none\" or \"tanh\", got "
                                   f"{_show(given)}")
        else:
            _int(given, f"{where}.{key}", 1, MAX_DIM)
    return attrs


def _show(value) -> str:
    """A short JSON rendering of a bad value for an error message."""
    if isinstance(value, (list, dict)):
        return f"a list of {len(value)}" if isinstance(value, list) else "an object"
    text = json.dumps(value) if isinstance(value, (bool, int, float, str)) or value is None \
        else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


# ---- µGraph JSON -> MuGraph ----------------------------------------------------------------

def _block_from_json(doc, where: str) -> BlockGraph:
    doc = _object(doc, where, _BLOCK_FIELDS)
    inputs = []
    for n, item in enumerate(_list(_field(doc, "inputs", where), f"{where}.inputs", 1)):
        at = f"{where}.inputs[{n}]"
        item = _object(item, at, {"tile", "source", "imap", "fmap"})
        inputs.append(BlockInput(
            _name(_field(item, "tile", at), f"{at}.tile"),
            _int(_field(item, "source", at), f"{at}.source", 0, MAX_ITEMS),
            _triple(_field(item, "imap", at), f"{at}.imap", NO_DIM, MAX_RANK - 1),
            _int(_field(item, "fmap", at, NO_DIM), f"{at}.fmap", NO_DIM, MAX_RANK - 1)))
    ops = []
    for n, item in enumerate(_list(_field(doc, "ops", where), f"{where}.ops")):
        at = f"{where}.ops[{n}]"
        item = _object(item, at, {"op", "inputs", "output", "attrs"})
        op = _choice(_field(item, "op", at), f"{at}.op", BLOCK_OPS)
        ops.append(BlockOp(op, _names(_field(item, "inputs", at), f"{at}.inputs"),
                           _name(_field(item, "output", at), f"{at}.output"),
                           _attrs(_field(item, "attrs", at, {}), f"{at}.attrs", BLOCK_OPS[op])))
    outputs = []
    for n, item in enumerate(_list(_field(doc, "outputs", where), f"{where}.outputs", 1)):
        at = f"{where}.outputs[{n}]"
        item = _object(item, at, {"tile", "omap"})
        outputs.append(BlockOutput(_name(_field(item, "tile", at), f"{at}.tile"),
                                   _triple(_field(item, "omap", at), f"{at}.omap", NO_DIM,
                                           MAX_RANK - 1)))
    return BlockGraph(_triple(_field(doc, "grid", where), f"{where}.grid", 1, MAX_GRID),
                      _int(_field(doc, "forloop_range", where), f"{where}.forloop_range", 1,
                           MAX_FORLOOP),
                      tuple(inputs), tuple(ops), tuple(outputs),
                      _int(_field(doc, "reduction_dimx", where, 64), f"{where}.reduction_dimx",
                           1, MAX_DIM),
                      _int(_field(doc, "threads", where, 128), f"{where}.threads", 1,
                           MAX_THREADS))


def _kernel_from_json(doc, n: int) -> KernelOp:
    where = f"kernels[{n}]"
    doc = _object(doc, where, _KERNEL_FIELDS)
    op = _choice(_field(doc, "op", where), f"{where}.op", [*LIBRARY_OPS, "block"])
    where = f"{where} ({op})"
    if op == "block":
        block = _block_from_json(_field(doc, "block", where), f"{where}.block")
        attrs = _object(_field(doc, "attrs", where, {}), f"{where}.attrs", set())
    else:
        if "block" in doc:
            raise MuGraphError(f"{where}.block: only a graph-defined kernel (op \"block\") "
                               f"has a block graph, this is a {op}")
        block = None
        attrs = _attrs(_field(doc, "attrs", where, {}), f"{where}.attrs", LIBRARY_OPS[op])
    return KernelOp(op, _names(_field(doc, "inputs", where), f"{where}.inputs", 1),
                    _names(_field(doc, "outputs", where), f"{where}.outputs", 1),
                    dict(attrs), block,
                    _name(_field(doc, "name", where, f"k{n}"), f"{where}.name", shortest=0))


def mugraph_from_json(doc) -> MuGraph:
    """Build a MuGraph from its JSON document, checking every field (see the module doc); the
    shape rules are model.kernel_shapes' (the loader does not run them)."""
    doc = _object(doc, "µGraph", _GRAPH_FIELDS)
    version = _field(doc, "format_version", "µGraph")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise MuGraphError(f"format_version: {_show(version)} is not {FORMAT_VERSION}")
    _choice(_field(doc, "kind", "µGraph", "mugraph"), "kind", ["mugraph"])
    inputs: dict[str, tuple[int, ...]] = {}
    for n, item in enumerate(_list(_field(doc, "inputs", "µGraph"), "inputs", 1)):
        at = f"inputs[{n}]"
        item = _object(item, at, {"name", "shape"})
        name = _name(_field(item, "name", at), f"{at}.name")
        if name in inputs:
            raise MuGraphError(f"{at}.name: input {name!r} is listed twice")
        shape = _list(_field(item, "shape", at), f"{at}.shape", 0, MAX_RANK)
        inputs[name] = tuple(_int(d, f"{at}.shape[{i}]", 1, MAX_DIM) for i, d in enumerate(shape))
    kernels = tuple(_kernel_from_json(k, n) for n, k in
                    enumerate(_list(_field(doc, "kernels", "µGraph"), "kernels", 1)))
    return MuGraph(_name(_field(doc, "name", "µGraph", "mugraph"), "name"), inputs, kernels,
                   _names(_field(doc, "outputs", "µGraph"), "outputs", 1),
                   _choice(_field(doc, "dtype", "µGraph", "float16"), "dtype", DTYPE_BYTES))


# ---- MuGraph -> µGraph JSON ----------------------------------------------------------------

def _block_to_json(block: BlockGraph) -> dict:
    return {
        "grid": list(block.grid), "forloop_range": block.forloop_range,
        "reduction_dimx": block.reduction_dimx, "threads": block.threads,
        "inputs": [{"tile": i.tile, "source": i.source, "imap": list(i.imap), "fmap": i.fmap}
                   for i in block.inputs],
        "ops": [{"op": o.op, "inputs": list(o.inputs), "output": o.output, "attrs": o.attrs}
                for o in block.ops],
        "outputs": [{"tile": o.tile, "omap": list(o.omap)} for o in block.outputs],
    }


def mugraph_to_json(graph: MuGraph) -> dict:
    return {
        "format_version": FORMAT_VERSION, "kind": "mugraph", "name": graph.name,
        "dtype": graph.dtype,
        "inputs": [{"name": n, "shape": list(s)} for n, s in graph.inputs.items()],
        "kernels": [{"name": k.name, "op": k.op, "inputs": list(k.inputs),
                     "outputs": list(k.outputs), "attrs": k.attrs,
                     **({"block": _block_to_json(k.block)} if k.block else {})}
                    for k in graph.ops],
        "outputs": list(graph.outputs),
    }


def load_mugraph(path) -> MuGraph:
    """Read a µGraph JSON file (bounded: see compiler/safe_io.read_json); MuGraphError names
    the file and the bad field, MlcError an unreadable file."""
    from mlc.compiler.safe_io import read_json

    path = Path(path)
    doc = read_json(path, "µGraph JSON file")
    try:
        return mugraph_from_json(doc)
    except MuGraphError as err:
        raise MuGraphError(f"{path}: {err}") from None


def save_mugraph(graph: MuGraph, path) -> None:
    Path(path).write_text(json.dumps(mugraph_to_json(graph), indent=1) + "\n")
