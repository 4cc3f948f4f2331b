"""The small toolkit canonicalization passes share: a read-only view of a graph for matchers,
and an editor that applies non-overlapping matches as one new Graph.

A matcher looks at the original graph only and proposes a Rewrite; the editor refuses a
rewrite that touches a node an earlier one claimed, so matches found in one sweep never
conflict, and every pass is a single sweep that returns the same graph object when nothing
matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlc.compiler.ir.graph import Graph, Node
from mlc.compiler.ir.types import is_float


@dataclass(frozen=True)
class Rewrite:
    """One match: drop `absorbed` nodes, put `emit[anchor]` in place of node `anchor`, make
    readers of each `aliases` key read its value instead, and add `weights`."""

    absorbed: frozenset[str]
    emit: dict[str, tuple[Node, ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)


class GraphView:
    """Queries matchers need, computed once per pass, plus fresh names that stay unique."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.producers = graph.producers()
        self.users = graph.consumers()
        self.outputs = set(graph.outputs)
        self._taken = set(graph.types) | {n.name for n in graph.nodes}

    def fresh(self, stem: str) -> str:
        """A node or value name used nowhere in the graph nor handed out before."""
        name, k = stem, 0
        while name in self._taken:
            k += 1
            name = f"{stem}_{k}"
        self._taken.add(name)
        return name

    def scalar(self, name: str) -> float | None:
        """The value of a one-element float weight, else None."""
        weight = self.graph.weights.get(name)
        if weight is None or weight.size != 1 or not is_float(self.graph.types[name].dtype):
            return None
        return float(weight.reshape(-1)[0])

    def is_float(self, name: str) -> bool:
        return is_float(self.graph.types[name].dtype)

    def private(self, value: str, readers: set[str]) -> bool:
        """True when `value` is no graph output and only nodes named in `readers` read it:
        the node producing it may be absorbed by a match covering those readers."""
        if value in self.outputs:
            return False
        return all(user.name in readers for user in self.users.get(value, []))

    def only_user(self, value: str) -> Node | None:
        """The single node reading `value` (once or more), when it is no graph output."""
        users = {u.name: u for u in self.users.get(value, [])}
        if value in self.outputs or len(users) != 1:
            return None
        return next(iter(users.values()))


class Editor:
    """Collects rewrites over one graph and builds the result."""

    def __init__(self, view: GraphView):
        self.view = view
        self.rewrites: list[Rewrite] = []
        self._claimed: set[str] = set()

    def add(self, rewrite: Rewrite | None) -> bool:
        """Accept a rewrite unless it touches a node an accepted rewrite already touched."""
        if rewrite is None:
            return False
        touched = rewrite.absorbed | set(rewrite.emit)
        if touched & self._claimed:
            return False
        self._claimed |= touched
        self.rewrites.append(rewrite)
        return True

    def claimed(self, node_name: str) -> bool:
        return node_name in self._claimed

    def build(self) -> Graph:
        """The rewritten graph, or the original object when no rewrite was accepted.

        Ensures: graph outputs and the names of nodes not absorbed are kept; weights that only
        absorbed nodes read are dropped."""
        graph = self.view.graph
        if not self.rewrites:
            return graph
        absorbed, emit, aliases, weights = set(), {}, {}, dict(graph.weights)
        for rewrite in self.rewrites:
            absorbed |= rewrite.absorbed
            emit.update(rewrite.emit)
            aliases.update(rewrite.aliases)
            weights.update(rewrite.weights)
        nodes = []
        for node in graph.nodes:
            nodes.extend(emit.get(node.name, ()))
            if node.name not in absorbed and node.name not in emit:
                nodes.append(node)
        nodes = [_read_aliases(node, aliases) for node in nodes]
        read = {name for node in nodes for name in node.inputs} | set(graph.outputs)
        dropped = {name for node in graph.nodes if node.name in absorbed
                   for name in node.inputs if name in graph.weights and name not in read}
        weights = {k: v for k, v in weights.items() if k not in dropped}
        return Graph.build(graph.name, graph.inputs, nodes, graph.outputs, weights)


def _read_aliases(node: Node, aliases: dict[str, str]) -> Node:
    """The node reading each aliased value's final target (aliases may chain)."""
    def target(name: str) -> str:
        while name in aliases:
            name = aliases[name]
        return name
    inputs = tuple(target(name) for name in node.inputs)
    if inputs == node.inputs:
        return node
    return Node(node.op, inputs, node.outputs, node.attrs, node.name)


def scalar_weight(value: float, dtype: np.dtype) -> np.ndarray:
    """A 0-d constant: broadcasts against anything without changing its shape."""
    return np.asarray(value, dtype=dtype)
