"""JSON round-trip of graphs: graph.json for structure, weights.safetensors beside it.

Weights are never pickled. Dtypes safetensors cannot hold go to weights.npz (allow_pickle off).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import MlcError
from .graph import Graph, IRError, Node
from .types import TensorType

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"


def graph_to_json(graph: Graph) -> dict:
    """The JSON document of a graph (without weight data)."""
    return {
        "format_version": FORMAT_VERSION,
        "name": graph.name,
        "inputs": [{"name": n, "shape": list(t.shape), "dtype": t.dtype}
                   for n, t in graph.inputs.items()],
        "outputs": list(graph.outputs),
        "weights_file": WEIGHTS_FILE,
        "weights": [{"name": n, "shape": list(w.shape), "dtype": TensorType.of(w).dtype}
                    for n, w in graph.weights.items()],
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
                   "outputs": list(n.outputs), "attrs": _attrs_to_json(n.attrs)}
                  for n in graph.nodes],
    }


def _attrs_to_json(attrs: dict) -> dict:
    def convert(v):
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        if isinstance(v, float) and not np.isfinite(v):
            return {"float": repr(v)}  # JSON has no inf/nan
        return v
    return {k: convert(v) for k, v in attrs.items()}


def _attrs_from_json(attrs: dict) -> dict:
    def convert(v):
        if isinstance(v, dict) and set(v) == {"float"}:
            return float(v["float"])
        if isinstance(v, list):
            return tuple(convert(x) for x in v)
        return v
    return {k: convert(v) for k, v in attrs.items()}


def save_graph(graph: Graph, directory: Path) -> None:
    """Write graph.json and the weights file into an existing directory."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    doc = graph_to_json(graph)
    try:
        save_file({k: np.require(v, requirements="C") for k, v in graph.weights.items()},
                  str(directory / WEIGHTS_FILE))
    except (ValueError, TypeError):  # a dtype safetensors does not know (e.g. ml_dtypes)
        doc["weights_file"] = "weights.npz"
        np.savez(directory / "weights.npz", **graph.weights)
    (directory / "graph.json").write_text(json.dumps(doc, indent=1) + "\n")


def load_graph(path: Path) -> Graph:
    """Read a graph.json (and its weights) written by save_graph."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MlcError(f"{path}: cannot read graph JSON ({err})") from None
    if doc.get("format_version") != FORMAT_VERSION:
        raise MlcError(f"{path}: format_version {doc.get('format_version')!r} is not "
                       f"{FORMAT_VERSION}; re-import the model with this mlc")
    weights_path = path.parent / doc["weights_file"]
    if weights_path.parent.resolve() != path.parent.resolve():
        raise MlcError(f"{path}: weights_file must be a file beside graph.json")
    weights = _load_weights(weights_path) if doc["weights"] else {}
    missing = [w["name"] for w in doc["weights"] if w["name"] not in weights]
    if missing:
        raise MlcError(f"{weights_path}: missing weights {missing[:5]}")
    try:
        return Graph.build(
            doc["name"],
            {i["name"]: TensorType(tuple(i["shape"]), i["dtype"]) for i in doc["inputs"]},
            [Node(n["op"], n["inputs"], n["outputs"], _attrs_from_json(n["attrs"]), n["name"])
             for n in doc["nodes"]],
            doc["outputs"],
            {w["name"]: weights[w["name"]] for w in doc["weights"]},
        )
    except (KeyError, IRError) as err:
        raise MlcError(f"{path}: not a valid mlc graph ({err})") from None


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise MlcError(f"{path}: weights file is missing")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    from safetensors.numpy import load_file
    return load_file(str(path))
