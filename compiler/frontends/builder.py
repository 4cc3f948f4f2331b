"""A small Python builder for writing IR graphs by hand.

    b = GraphBuilder("mlp")
    x = b.input("x", (8, 784))
    w = b.weight("w", rng.standard_normal((784, 10), dtype=np.float32))
    y = b.op("Relu", b.op("MatMul", x, w))
    graph = b.build(y)
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from ..ir.types import TensorType


class GraphBuilder:
    """Collects inputs, weights and nodes; `build(*outputs)` returns a typed, linted Graph."""

    def __init__(self, name: str):
        self.name = name
        self.inputs: dict[str, TensorType] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.nodes: list[Node] = []
        self._counter = 0

    def _fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def input(self, name: str, shape, dtype: str = "float32") -> str:
        self.inputs[name] = TensorType(tuple(shape), dtype)
        return name

    def weight(self, name: str, value) -> str:
        self.weights[name] = np.asarray(value)
        return name

    def const(self, value, dtype: str = "float32") -> str:
        """An anonymous constant weight (scalars, masks, ...)."""
        return self.weight(self._fresh("const"), np.asarray(value, dtype=dtype))

    def op(self, op: str, *inputs: str, outputs: int = 1, name: str | None = None, **attrs):
        """Append a node; returns its output name (or a tuple when outputs > 1)."""
        if op not in OPS:
            raise KeyError(f"unknown IR op {op!r}")
        name = name or self._fresh(op.lower())
        outs = tuple(f"{name}" if outputs == 1 else f"{name}.{i}" for i in range(outputs))
        self.nodes.append(Node(op, inputs, outs, attrs, name))
        return outs[0] if outputs == 1 else outs

    def build(self, *outputs: str) -> Graph:
        return Graph.build(self.name, self.inputs, self.nodes, outputs, self.weights)
