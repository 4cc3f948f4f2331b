"""µGraph JSON (our own format, schema in specs/schemas/mugraph.schema.json).

Malformed documents raise MuGraphError naming the JSON path of the bad field.
"""

from __future__ import annotations

import json
from pathlib import Path

from .model import NO_DIM, BlockGraph, BlockInput, BlockOp, BlockOutput, KernelOp, MuGraph
from .ops import MuGraphError

FORMAT_VERSION = 1


def _get(obj, key, where, kind=None, default=...):
    if not isinstance(obj, dict):
        raise MuGraphError(f"{where}: expected an object")
    if key not in obj:
        if default is not ...:
            return default
        raise MuGraphError(f"{where}: missing field {key!r}")
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        raise MuGraphError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got "
                           f"{type(value).__name__}")
    return value


def _triple(value, where):
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int)
                                                                for v in value)):
        raise MuGraphError(f"{where}: expected three integers, got {value!r}")
    return tuple(value)


def _block_from_json(doc, where) -> BlockGraph:
    inputs = tuple(
        BlockInput(_get(i, "tile", f"{where}.inputs[{n}]", str),
                   _get(i, "source", f"{where}.inputs[{n}]", int),
                   _triple(_get(i, "imap", f"{where}.inputs[{n}]"), f"{where}.inputs[{n}].imap"),
                   _get(i, "fmap", f"{where}.inputs[{n}]", int, NO_DIM))
        for n, i in enumerate(_get(doc, "inputs", where, list)))
    ops = tuple(
        BlockOp(_get(o, "op", f"{where}.ops[{n}]", str),
                tuple(_get(o, "inputs", f"{where}.ops[{n}] ({o.get('op')})", list)),
                _get(o, "output", f"{where}.ops[{n}] ({o.get('op')})", str),
                dict(_get(o, "attrs", f"{where}.ops[{n}]", dict, {})))
        for n, o in enumerate(_get(doc, "ops", where, list)))
    outputs = tuple(
        BlockOutput(_get(o, "tile", f"{where}.outputs[{n}]", str),
                    _triple(_get(o, "omap", f"{where}.outputs[{n}]"),
                            f"{where}.outputs[{n}].omap"))
        for n, o in enumerate(_get(doc, "outputs", where, list)))
    return BlockGraph(_triple(_get(doc, "grid", where), f"{where}.grid"),
                      _get(doc, "forloop_range", where, int), inputs, ops, outputs,
                      _get(doc, "reduction_dimx", where, int, 64),
                      _get(doc, "threads", where, int, 128))


def mugraph_from_json(doc: dict) -> MuGraph:
    """Build a MuGraph from its JSON document (does not validate shapes: see kernel_shapes)."""
    if _get(doc, "format_version", "µGraph") != FORMAT_VERSION:
        raise MuGraphError(f"µGraph format_version {doc.get('format_version')!r} is not "
                           f"{FORMAT_VERSION}")
    inputs = {}
    for n, i in enumerate(_get(doc, "inputs", "µGraph", list)):
        shape = _get(i, "shape", f"inputs[{n}]", list)
        inputs[_get(i, "name", f"inputs[{n}]", str)] = tuple(int(d) for d in shape)
    ops = []
    for n, k in enumerate(_get(doc, "kernels", "µGraph", list)):
        where = f"kernels[{n}] ({k.get('op') if isinstance(k, dict) else '?'})"
        op = _get(k, "op", where, str)
        block = _block_from_json(_get(k, "block", where, dict), f"{where}.block") \
            if op == "block" else None
        ops.append(KernelOp(op, tuple(_get(k, "inputs", where, list)),
                            tuple(_get(k, "outputs", where, list)),
                            dict(_get(k, "attrs", where, dict, {})), block,
                            _get(k, "name", where, str, f"k{n}")))
    return MuGraph(_get(doc, "name", "µGraph", str, "mugraph"), inputs, tuple(ops),
                   tuple(_get(doc, "outputs", "µGraph", list)),
                   _get(doc, "dtype", "µGraph", str, "float16"))


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
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise MuGraphError(f"{path}: cannot read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise MuGraphError(f"{path}: not JSON ({err})") from None
    try:
        return mugraph_from_json(doc)
    except MuGraphError as err:
        raise MuGraphError(f"{path}: {err}") from None


def save_mugraph(graph: MuGraph, path) -> None:
    Path(path).write_text(json.dumps(mugraph_to_json(graph), indent=1) + "\n")
