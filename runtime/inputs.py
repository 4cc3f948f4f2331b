"""Random inputs that a model can actually take (valid indices for embedding lookups)."""

from __future__ import annotations

import numpy as np

from mlc.compiler.ir.graph import Graph
from mlc.compiler.ir.types import is_float, np_dtype


def _index_bounds(graph: Graph) -> dict[str, int]:
    """For inputs used as Gather indices: the size of the gathered axis (smallest if several)."""
    bounds: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "Gather" and node.inputs[1] in graph.inputs:
            data = graph.types[node.inputs[0]]
            size = data.shape[node.attrs.get("axis", 0)]
            name = node.inputs[1]
            bounds[name] = min(bounds.get(name, size), size)
    return bounds


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal floats; ints in [0, 2) or in range of the table they index; random bools."""
    rng = np.random.default_rng(seed)
    bounds = _index_bounds(graph)
    out = {}
    for name, t in graph.inputs.items():
        if is_float(t.dtype):
            value = rng.standard_normal(t.shape)
        elif t.dtype == "bool":
            value = rng.random(t.shape) < 0.5
        else:
            value = rng.integers(0, bounds.get(name, 2), size=t.shape)
        out[name] = np.asarray(value).astype(np_dtype(t.dtype))
    return out
