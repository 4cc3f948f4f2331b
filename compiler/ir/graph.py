"""The IR graph: named inputs, weights, a topologically ordered node list, and named outputs.

Graphs are built once and not mutated: `Graph.build` infers every value's type and lints the
result, so a Graph in hand is always well-formed. Passes return new graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ops import OPS, resolve_attrs
from .shapes import ShapeError, check_constant_operands, check_size
from .types import TensorType


class IRError(ValueError):
    """A graph breaks an IR invariant (unknown op, undefined value, bad shapes, ...)."""


def normalize_attr(value: Any) -> Any:
    """Attributes are plain JSON-able values: int, float, str, bool, None, or tuples of them."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return normalize_attr(value.tolist())
    if isinstance(value, (list, tuple)):
        return tuple(normalize_attr(v) for v in value)
    if isinstance(value, bytes):
        return value.decode()
    return value


@dataclass(frozen=True)
class Node:
    """One op application, e.g. Node("MatMul", ("x", "w"), ("y",), {}, "fc1")."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "attrs", {k: normalize_attr(v) for k, v in self.attrs.items()})


@dataclass(frozen=True)
class Graph:
    """A typed, linted IR graph. Build it with Graph.build(...)."""

    name: str
    inputs: dict[str, TensorType]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    weights: dict[str, np.ndarray]
    types: dict[str, TensorType]

    @staticmethod
    def build(name: str, inputs: dict[str, TensorType], nodes, outputs,
              weights: dict[str, np.ndarray] | None = None) -> Graph:
        """Infer types, lint, and return the graph; raises IRError on any broken invariant."""
        weights = {k: np.asarray(v) for k, v in (weights or {}).items()}
        types = infer_types(inputs, weights, nodes)
        graph = Graph(name, dict(inputs), tuple(outputs), tuple(nodes), weights, types)
        graph.lint()
        return graph

    # ---- queries ---------------------------------------------------------------------------
    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node)
        return users

    def num_params(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def lint(self) -> None:
        """Check the invariants every pass may rely on; raise IRError listing all problems."""
        problems = []
        defined = set(self.inputs)
        for name in self.weights:
            if name in defined:
                problems.append(f"{name!r} is both an input and a weight")
            defined.add(name)
        node_names = set()
        for node in self.nodes:
            if node.name and node.name in node_names:
                problems.append(f"node name {node.name!r} is used twice")
            node_names.add(node.name)
            for name in node.inputs:
                if name not in defined:
                    problems.append(f"node {node.name!r} ({node.op}) reads {name!r} before it "
                                    "is defined")
            for name in node.outputs:
                if name in defined:
                    problems.append(f"value {name!r} is defined twice")
                defined.add(name)
        for name in self.outputs:
            if name not in defined:
                problems.append(f"graph output {name!r} is never defined")
        if not self.outputs:
            problems.append("graph has no outputs")
        if problems:
            raise IRError(f"graph {self.name!r}: " + "; ".join(problems))


def infer_types(inputs: dict[str, TensorType], weights: dict[str, np.ndarray],
                nodes) -> dict[str, TensorType]:
    """Every value's TensorType, by running the op table's shape rules in node order."""
    types = dict(inputs)
    types.update({name: TensorType.of(w) for name, w in weights.items()})
    for node in nodes:
        where = f"node {node.name!r} ({node.op})"
        op = OPS.get(node.op)
        if op is None:
            raise IRError(f"{where}: unknown op {node.op!r}")
        low, high = op.arity
        if len(node.inputs) < low or (high is not None and len(node.inputs) > high):
            raise IRError(f"{where}: takes {low}..{high or 'any'} inputs, got {len(node.inputs)}")
        missing = [name for name in node.inputs if name not in types]
        if missing:
            raise IRError(f"{where}: inputs {missing} are not defined before this node")
        try:
            attrs = resolve_attrs(op, node.attrs)
            in_types = [types[name] for name in node.inputs]
            outs = op.infer(in_types, attrs)
            for t in outs:
                check_size(t)
            check_constant_operands(node.op, in_types, [weights.get(n) for n in node.inputs],
                                    attrs)
        except (ShapeError, ValueError, TypeError, IndexError, ArithmeticError) as err:
            shown = ", ".join(f"{n}: {types[n]}" for n in node.inputs)
            raise IRError(f"{where}: {err} (inputs {shown})") from None
        if len(outs) != len(node.outputs):
            raise IRError(f"{where}: produces {len(outs)} outputs, node names "
                          f"{len(node.outputs)}")
        types.update(zip(node.outputs, outs))
    return types
