"""The numpy reference interpreter: the ground truth every other executor is tested against."""

from __future__ import annotations

import numpy as np

from ..errors import MlcError
from .graph import Graph
from .ops import compute
from .types import TensorType, is_float, np_dtype


def check_inputs(graph: Graph, inputs: dict[str, np.ndarray]) -> None:
    """Raise MlcError naming every missing, extra or mis-shaped input."""
    problems = []
    for name, expected in graph.inputs.items():
        if name not in inputs:
            problems.append(f"missing input {name!r} ({expected})")
            continue
        got = np.asarray(inputs[name])
        if tuple(got.shape) != expected.shape:
            problems.append(f"input {name!r} has shape {list(got.shape)}, the model expects "
                            f"{list(expected.shape)}")
    extra = sorted(set(inputs) - set(graph.inputs))
    if extra:
        problems.append(f"unknown input(s) {extra}; the model's inputs are {list(graph.inputs)}")
    if problems:
        raise MlcError("; ".join(problems))


def _as_dtype(value: np.ndarray, dtype: str, float64: bool) -> np.ndarray:
    if float64 and is_float(dtype):
        return np.asarray(value, dtype=np.float64)
    return np.asarray(value).astype(np_dtype(dtype), copy=False)


def interpret(graph: Graph, inputs: dict[str, np.ndarray], *, float64: bool = False,
              check_types: bool = False) -> dict[str, np.ndarray]:
    """Run the graph on numpy arrays and return its outputs by name.

    float64=True computes every float tensor in float64 (the mode checks compare against).
    check_types=True asserts each computed value matches its inferred TensorType.

    >>> interpret(graph, {"x": np.ones((2, 4), np.float32)})["y"]
    """
    check_inputs(graph, inputs)
    values = {name: _as_dtype(inputs[name], t.dtype, float64) for name, t in graph.inputs.items()}
    values.update({name: _as_dtype(w, TensorType.of(w).dtype, float64)
                   for name, w in graph.weights.items()})
    last_use = {name: i for i, node in enumerate(graph.nodes) for name in node.inputs}
    keep = set(graph.outputs)
    for i, node in enumerate(graph.nodes):
        attrs = dict(node.attrs)
        if float64 and node.op == "Cast" and is_float(attrs["to"]):
            attrs["to"] = "float64"
        results = compute(node.op, [values[name] for name in node.inputs], attrs)
        for name, result in zip(node.outputs, results):
            expected = graph.types[name]
            if not float64 or not is_float(expected.dtype):
                result = result.astype(np_dtype(expected.dtype), copy=False)
            if check_types and tuple(result.shape) != expected.shape:
                raise AssertionError(f"node {node.name!r} ({node.op}) output {name!r}: computed "
                                     f"shape {result.shape}, inferred {expected.shape}")
            values[name] = result
        for name in node.inputs:  # free intermediates after their last use
            if last_use.get(name) == i and name not in keep and name not in graph.weights:
                values.pop(name, None)
    return {name: values[name] for name in graph.outputs}
