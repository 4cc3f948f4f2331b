"""Fold the activation patterns exporters spell out back into the IR's named ops.

ONNX has no SiLU before opset 24's Swish, so exporters write silu(x) as Mul(x, Sigmoid(x));
GELU arrives as the Erf formula. The superoptimizer reasons about named ops, so this pass
restores them. Patterns are data: (root op, matcher) rows in PATTERNS.
"""

from __future__ import annotations

from mlc.compiler.ir.graph import Graph, Node


def _silu(node: Node, producers: dict[str, Node], users: dict[str, list[Node]]):
    """Mul(x, Sigmoid(x)) (either order) -> Silu(x), when the Sigmoid feeds only this Mul."""
    if len(node.inputs) != 2:
        return None
    for a, b in (node.inputs, node.inputs[::-1]):
        sig = producers.get(b)
        if sig is not None and sig.op == "Sigmoid" and sig.inputs[0] == a \
                and len(users.get(b, [])) == 1:
            return Node("Silu", (a,), node.outputs, {}, node.name), sig
    return None


PATTERNS = {"Mul": _silu}  # root op -> matcher returning (replacement, absorbed node) or None


def canonicalize_activations(graph: Graph) -> Graph:
    """Requires a typed Graph; ensures the same function with exporter-expanded activations
    (see PATTERNS) replaced by their IR ops. Absorbed nodes are dropped."""
    producers = graph.producers()
    users = graph.consumers()
    replaced: dict[str, Node] = {}
    absorbed: set[str] = set()
    for node in graph.nodes:
        matcher = PATTERNS.get(node.op)
        match = matcher(node, producers, users) if matcher else None
        if match is not None and graph.outputs and match[1].outputs[0] not in graph.outputs:
            replaced[node.name], absorbed_node = match
            absorbed.add(absorbed_node.name)
    if not replaced:
        return graph
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in absorbed]
    return Graph.build(graph.name, graph.inputs, nodes, graph.outputs, graph.weights)
