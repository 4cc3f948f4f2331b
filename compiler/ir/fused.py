"""The MuGraphCall op: a fused region replaced by a µGraph (what `mlc optimize` emits).

Its one attribute is the µGraph's JSON document as a string; inputs and outputs pair up with
the µGraph's by position. Semantics: the µGraph interpreter in float, so the reference
interpreter checks an optimized graph against the original exactly as it checks anything else.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from .shapes import ShapeError
from .types import TensorType


@lru_cache(maxsize=256)
def parse_mugraph(document: str):
    """The MuGraph of a MuGraphCall attribute (parsed once per distinct document)."""
    from mlc.compiler.superopt.mugraph import MuGraphError, kernel_shapes, mugraph_from_json
    try:
        graph = mugraph_from_json(json.loads(document))
        shapes = kernel_shapes(graph)
    except (json.JSONDecodeError, MuGraphError) as err:
        raise ShapeError(f"MuGraphCall carries an invalid µGraph: {err}") from None
    return graph, shapes


def mugraph_call_types(types, attrs):
    graph, shapes = parse_mugraph(attrs["mugraph"])
    expected = list(graph.inputs.values())
    if [t.shape for t in types] != [tuple(s) for s in expected]:
        raise ShapeError(f"MuGraphCall inputs {[t.shape for t in types]} do not match the "
                         f"µGraph's {expected}")
    return [TensorType(shapes[name], types[0].dtype) for name in graph.outputs]


def mugraph_call(*inputs, mugraph):
    from mlc.compiler.superopt.mugraph import FloatArith, run_mugraph
    graph, _ = parse_mugraph(mugraph)
    dtype = inputs[0].dtype
    feeds = dict(zip(graph.inputs, inputs))
    outputs = run_mugraph(graph, feeds, FloatArith(dtype))
    return [np.asarray(outputs[name], dtype=dtype) for name in graph.outputs]
