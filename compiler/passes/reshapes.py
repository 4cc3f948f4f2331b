"""Leading unit dims that exporters flatten away around a Linear, put back.

GPT-2's Conv1D (and any Linear exported through addmm) is x.view(-1, K) @ W + b, viewed back
to (1, T, N): a Reshape on each side of the matmul that stops region selection from seeing
the LayerNorm before it or the activation after it. MatMul with a 2-D weight, a bias Add and
elementwise ops broadcast the same with the leading 1 kept, so the pair can go.
"""

from __future__ import annotations

from mlc.compiler.ir.graph import Graph, Node

from .rewrite import Editor, GraphView, Rewrite

UNARY = {"Gelu", "Silu", "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Sqrt", "Neg", "Identity"}
BINARY = {"Add", "Sub", "Mul", "Div"}


def _dropped_units(view: GraphView, node: Node) -> int:
    """k when `node` is a Reshape that only drops k >= 1 leading size-1 dims, else 0."""
    if node.op != "Reshape":
        return 0
    before = tuple(view.graph.types[node.inputs[0]].shape)
    after = tuple(view.graph.types[node.outputs[0]].shape)
    k = len(before) - len(after)
    return k if k >= 1 and before == (1,) * k + after else 0


def _safe(view: GraphView, node: Node, chain: set[str]) -> bool:
    """Does `node` compute the same values when its chain operands gain leading 1s?"""
    types = view.graph.types
    if node.op in UNARY:
        return True
    if node.op == "MatMul":
        weight = node.inputs[1]
        return node.inputs[0] in chain and weight not in chain and types[weight].rank == 2
    if node.op in BINARY and len(node.inputs) == 2:
        rank = max(types[x].rank for x in node.inputs if x in chain)
        return all(x in chain or types[x].rank <= rank for x in node.inputs)
    return False


def _match(view: GraphView, start: Node) -> Rewrite | None:
    k = _dropped_units(view, start)
    if not k:
        return None
    chain, absorbed, aliases = {start.outputs[0]}, {start.name}, {start.outputs[0]:
                                                                  start.inputs[0]}
    frontier = [start.outputs[0]]
    while frontier:
        value = frontier.pop()
        if value in view.outputs:
            return None
        for user in {u.name: u for u in view.users.get(value, [])}.values():
            if user.name in absorbed or any(o in chain for o in user.outputs):
                continue
            restored = (1,) * k + tuple(view.graph.types[value].shape)
            if user.op == "Reshape" and tuple(view.graph.types[user.outputs[0]].shape) \
                    == restored:
                absorbed.add(user.name)
                aliases[user.outputs[0]] = value
            elif _safe(view, user, chain):
                chain.update(user.outputs)
                frontier.extend(user.outputs)
            else:
                return None
    if len(absorbed) == 1:
        return None  # never viewed back: the flattened shape escapes
    return Rewrite(frozenset(absorbed), {}, aliases)


def restore_unit_dims(graph: Graph) -> Graph:
    """Requires a typed Graph; ensures every Reshape that drops leading size-1 dims, whose
    values only flow through matmuls by 2-D weights and elementwise ops into Reshapes that add
    the same dims back, is removed together with those Reshapes (same function, same output
    names; the values in between keep the leading 1s)."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        if node.op == "Reshape" and not editor.claimed(node.name):
            editor.add(_match(view, node))
    return editor.build()
