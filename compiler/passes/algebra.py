"""Small algebraic rewrites that turn exporter spellings into ops the µGraph level supports.

Each pass is one table-free sweep with a matcher per root op; matchers read the original
graph only (see rewrite.py) and never absorb a node whose value is a graph output or is read
outside the match.
"""

from __future__ import annotations

from mlc.compiler.ir.graph import Graph, Node
from mlc.compiler.ir.types import np_dtype

from .rewrite import Editor, GraphView, Rewrite, scalar_weight


def _sweep(graph: Graph, matchers: dict) -> Graph:
    """Run `matchers[node.op]` on every node in order; apply the non-overlapping matches."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        matcher = matchers.get(node.op)
        if matcher is not None and not editor.claimed(node.name):
            editor.add(matcher(view, node))
    return editor.build()


def _keeps_type(view: GraphView, value: str, out: str) -> bool:
    """The scalar operand does not broadcast `value` to another shape or dtype."""
    return view.graph.types[value] == view.graph.types[out]


# ---- Pow with a constant exponent ------------------------------------------------------------
def _pow_spelling(view: GraphView, node: Node, x: str, exponent: float):
    """The nodes computing x ** exponent into node's output, or None when not rewritten.
    An empty tuple means x itself (exponent 1): readers read x directly."""
    out, name = node.outputs[0], node.name
    if exponent == 1.0:
        return ()
    if exponent == 2.0:
        return (Node("Mul", (x, x), (out,), {}, name),)
    if exponent == 3.0:
        square = view.fresh(f"{x}_squared")
        return (Node("Mul", (x, x), (square,), {}, view.fresh(f"{name}/square")),
                Node("Mul", (square, x), (out,), {}, name))
    if exponent == 0.5:
        return (Node("Sqrt", (x,), (out,), {}, name),)
    if exponent == -1.0:
        return (Node("Reciprocal", (x,), (out,), {}, name),)
    if exponent == -0.5:
        root = view.fresh(f"{x}_sqrt")
        return (Node("Sqrt", (x,), (root,), {}, view.fresh(f"{name}/sqrt")),
                Node("Reciprocal", (root,), (out,), {}, name))
    return None


def _match_pow(view: GraphView, node: Node) -> Rewrite | None:
    """Pow(x, c), c in {1, 2, 3, 0.5, -1, -0.5} -> x, x*x, x*x*x, Sqrt, Reciprocal, 1/Sqrt."""
    x, exponent = node.inputs[0], view.scalar(node.inputs[1])
    out = node.outputs[0]
    if exponent is None or not view.is_float(x) or not _keeps_type(view, x, out):
        return None
    spelling = _pow_spelling(view, node, x, exponent)
    if spelling is None or (spelling == () and out in view.outputs):
        return None
    if spelling == ():
        return Rewrite(frozenset({node.name}), aliases={out: x})
    return Rewrite(frozenset({node.name}), {node.name: spelling})


def simplify_pow(graph: Graph) -> Graph:
    """Requires a typed Graph. Ensures every float Pow whose exponent is a scalar weight in
    {1, 2, 3, 0.5, -1, -0.5} became multiplications, Sqrt and Reciprocal (Pow(x, 1) is dropped
    and its readers read x, unless it is a graph output). Other exponents stay Pow."""
    return _sweep(graph, {"Pow": _match_pow})


# ---- reciprocals feeding products --------------------------------------------------------------
def _denominator(view: GraphView, value: str) -> tuple[Node, str] | None:
    """(node, y) when `value` is Reciprocal(y) or Div(1, y)."""
    node = view.producers.get(value)
    if node is None:
        return None
    if node.op == "Reciprocal":
        return node, node.inputs[0]
    if node.op == "Div" and view.scalar(node.inputs[0]) == 1.0 \
            and _keeps_type(view, node.inputs[1], value):
        return node, node.inputs[1]
    return None


def _match_reciprocal(view: GraphView, node: Node) -> Rewrite | None:
    """Reciprocal(y) (or Div(1, y)) read only by Muls, each once: every Mul(x, .) -> Div(x, y)."""
    found = _denominator(view, node.outputs[0])
    if found is None or not view.is_float(node.outputs[0]):
        return None
    value, (_, y) = node.outputs[0], found
    users = view.users.get(value, [])
    if value in view.outputs or not users:
        return None
    emit = {}
    for mul in users:
        if mul.op != "Mul" or mul.inputs.count(value) != 1:
            return None
        x = mul.inputs[1] if mul.inputs[0] == value else mul.inputs[0]
        emit[mul.name] = (Node("Div", (x, y), mul.outputs, {}, mul.name),)
    return Rewrite(frozenset({node.name, *emit}), emit)


def reciprocal_to_div(graph: Graph) -> Graph:
    """Requires a typed Graph. Ensures a float Reciprocal(y) or Div(1, y) whose only readers are
    Muls became a Div(x, y) per Mul (keeping each Mul's name and output), e.g. Llama's
    x * Reciprocal(Sqrt(var + eps)) -> Div(x, Sqrt(var + eps))."""
    return _sweep(graph, {"Reciprocal": _match_reciprocal, "Div": _match_reciprocal})


# ---- the NaN guard after softmax ---------------------------------------------------------------
def _match_nan_guard(view: GraphView, node: Node) -> Rewrite | None:
    """Where(IsNaN(s), 0, s) with s = Softmax(...) -> s."""
    cond, zero, scores = node.inputs
    check = view.producers.get(cond)
    producer = view.producers.get(scores)
    if check is None or check.op != "IsNaN" or check.inputs[0] != scores \
            or producer is None or producer.op != "Softmax" or view.scalar(zero) != 0.0 \
            or node.outputs[0] in view.outputs or not _keeps_type(view, scores, node.outputs[0]):
        return None
    absorbed = {node.name}
    if view.only_user(cond) is node:
        absorbed.add(check.name)
    return Rewrite(frozenset(absorbed), aliases={node.outputs[0]: scores})


def drop_softmax_nan_guard(graph: Graph) -> Graph:
    """Requires a typed Graph. Ensures Where(IsNaN(s), 0, s) over s = Softmax(...) is gone and
    its readers read s (the IsNaN too when nothing else reads it).

    Assumes finite attention scores: softmax is NaN only when a whole row is -inf (fully
    masked) or NaN, where the guard would give zeros; everywhere else the two agree exactly."""
    return _sweep(graph, {"Where": _match_nan_guard})


# ---- scalar scales around MatMul ---------------------------------------------------------------
def _scaled_operand(view: GraphView, value: str, matmul: Node) -> tuple[str, float, str] | None:
    """(a, c, mul name) when `value` = Mul(a, c) with scalar c, read only by `matmul`."""
    mul = view.producers.get(value)
    if mul is None or mul.op != "Mul" or view.only_user(value) is not matmul:
        return None
    for a, c in (mul.inputs, mul.inputs[::-1]):
        factor = view.scalar(c)
        if factor is not None and view.scalar(a) is None and _keeps_type(view, a, value):
            return a, factor, mul.name
    return None


def _match_matmul_scales(view: GraphView, node: Node) -> Rewrite | None:
    """MatMul(Mul(a, c1), Mul(b, c2)) -> Mul(MatMul(a, b), c1 * c2); either Mul may be absent."""
    if not view.is_float(node.outputs[0]):
        return None
    sides = [_scaled_operand(view, value, node) for value in node.inputs]
    if sides == [None, None] or node.inputs[0] == node.inputs[1]:
        return None
    operands, factor, absorbed = [], 1.0, {node.name}
    for value, side in zip(node.inputs, sides):
        if side is None:
            operands.append(value)
        else:
            operands.append(side[0])
            factor *= side[1]
            absorbed.add(side[2])
    out = node.outputs[0]
    product = view.fresh(f"{out}_unscaled")
    const = view.fresh(f"{node.name}/scale")
    nodes = (Node("MatMul", tuple(operands), (product,), {}, node.name),
             Node("Mul", (product, const), (out,), {}, view.fresh(f"{node.name}/mul")))
    dtype = np_dtype(view.graph.types[out].dtype)
    return Rewrite(frozenset(absorbed), {node.name: nodes},
                   weights={const: scalar_weight(factor, dtype)})


def hoist_matmul_scales(graph: Graph) -> Graph:
    """Requires a typed Graph. Ensures a float MatMul whose operands are scaled by scalar
    weights (torchscript's SDPA scales q and k by sqrt(scale) each) reads the unscaled operands
    and one Mul by the product of the scales follows it, when those Muls fed only it."""
    return _sweep(graph, {"MatMul": _match_matmul_scales})
