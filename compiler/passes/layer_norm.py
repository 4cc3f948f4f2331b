"""Fold the decomposed layer norm (older opsets, hand-written norms) into LayerNormalization.

The spelling recognized, over the last axis, after simplify_pow and reciprocal_to_div have
run (so Pow(d, 2) is Mul(d, d) and a reciprocal square root is a Div):

    mean = ReduceMean(x);  d = Sub(x, mean);  var = ReduceMean(Mul(d, d))
    y = Div(d, Sqrt(Add(var, eps)))  [ * gamma ]  [ + beta ]
"""

from __future__ import annotations

import numpy as np

from mlc.compiler.ir.graph import Graph, Node
from mlc.compiler.ir.types import np_dtype

from .rewrite import Editor, GraphView, Rewrite


class _NoMatch(Exception):
    """Raised inside a matcher to abandon it; no error reaches the caller."""


def _require(condition: bool) -> None:
    if not condition:
        raise _NoMatch


def _producer(view: GraphView, value: str, op: str, readers: set[str]) -> Node:
    """The `op` node producing `value`, which only nodes named in `readers` read."""
    node = view.producers.get(value)
    _require(node is not None and node.op == op and view.private(value, readers))
    return node


def _last_axis_mean(view: GraphView, node: Node) -> str:
    """The input of a ReduceMean over exactly the last axis, keeping it."""
    rank = len(view.graph.types[node.inputs[0]].shape)
    axes = node.attrs.get("axes")
    _require(axes is not None and len(axes) == 1 and axes[0] % max(rank, 1) == rank - 1
             and node.attrs.get("keepdims", 1) == 1)
    return node.inputs[0]


def _row_vector(view: GraphView, name: str, width: int) -> np.ndarray:
    """The weight `name` as shape (width,), when it only varies along the last axis."""
    weight = view.graph.weights.get(name)
    _require(weight is not None and weight.size == width and weight.ndim >= 1
             and weight.shape[-1] == width)
    return weight.reshape(width)


def _mean_square_root(view: GraphView, div: Node) -> tuple[float, list[Node]]:
    """(eps, [square, mean, add, sqrt]) for Div(d, Sqrt(ReduceMean(d * d) + eps)) over the last
    axis, the denominator both norms share (d is div's numerator)."""
    d, std = div.inputs
    sqrt = _producer(view, std, "Sqrt", {div.name})
    add = _producer(view, sqrt.inputs[0], "Add", {sqrt.name})
    var_name, eps_name = add.inputs if view.scalar(add.inputs[1]) is not None \
        else add.inputs[::-1]
    eps = view.scalar(eps_name)
    _require(eps is not None)
    var = _producer(view, var_name, "ReduceMean", {add.name})
    square = view.producers.get(_last_axis_mean(view, var))
    _require(square is not None and square.op == "Mul" and square.inputs == (d, d)
             and view.private(square.outputs[0], {var.name}))
    return eps, [square, var, add, sqrt]


def _core(view: GraphView, div: Node) -> tuple[str, float, list[Node]]:
    """(x, eps, matched nodes) for y = Div(d, Sqrt(Add(var, eps)))."""
    d = div.inputs[0]
    eps, (square, var, add, sqrt) = _mean_square_root(view, div)
    sub = _producer(view, d, "Sub", {square.name, div.name})
    x, mean_name = sub.inputs
    mean = _producer(view, mean_name, "ReduceMean", {sub.name})
    _require(_last_axis_mean(view, mean) == x)
    return x, eps, [mean, sub, square, var, add, sqrt, div]


def _affine(view: GraphView, value: str, op: str, width: int):
    """(node, row weight) when `value` is read only by `op`(value, w) with a row weight w."""
    node = view.only_user(value)
    if node is None or node.op != op or node.inputs.count(value) != 1:
        return None
    other = node.inputs[1] if node.inputs[0] == value else node.inputs[0]
    if view.graph.types[node.outputs[0]] != view.graph.types[value]:
        return None
    try:
        return node, _row_vector(view, other, width)
    except _NoMatch:
        return None


def _match(view: GraphView, div: Node) -> Rewrite | None:
    """The decomposed layer norm ending at `div` (plus gamma and beta), as a Rewrite."""
    try:
        x, eps, nodes = _core(view, div)
    except _NoMatch:
        return None
    x_type = view.graph.types[x]
    if not view.is_float(x) or view.graph.types[div.outputs[0]] != x_type or not x_type.shape:
        return None
    width, dtype = x_type.shape[-1], np_dtype(x_type.dtype)
    gamma, beta, last = np.ones(width, dtype), None, div
    scaled = _affine(view, div.outputs[0], "Mul", width)
    if scaled is not None:
        last, gamma = scaled
        nodes.append(last)
        shifted = _affine(view, last.outputs[0], "Add", width)
        if shifted is not None:
            last, beta = shifted
            nodes.append(last)
    weights = {view.fresh(f"{last.name}/scale"): gamma.astype(dtype)}
    if beta is not None:
        weights[view.fresh(f"{last.name}/bias")] = beta.astype(dtype)
    norm = Node("LayerNormalization", (x, *weights), last.outputs,
                {"axis": -1, "epsilon": eps}, last.name)
    return Rewrite(frozenset(n.name for n in nodes), {last.name: (norm,)}, weights=weights)


def fuse_layer_norm(graph: Graph) -> Graph:
    """Requires a typed Graph, after simplify_pow and reciprocal_to_div. Ensures each
    decomposed last-axis layer norm (module docstring), with its row-vector gamma and beta
    when present, is one LayerNormalization(axis=-1) named and valued like the last node it
    absorbed. Nothing whose value is read outside the pattern or is a graph output is
    absorbed; returns `graph` itself when nothing matched."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        if node.op == "Div" and not editor.claimed(node.name):
            editor.add(_match(view, node))
    return editor.build()


def _match_rms(view: GraphView, div: Node) -> Rewrite | None:
    """x / Sqrt(ReduceMean(x * x) + eps) [* w] over the last axis (Llama's RMSNorm after
    simplify_pow and reciprocal_to_div), as one RMSNormalization."""
    x = div.inputs[0]
    try:
        eps, denominator = _mean_square_root(view, div)
    except _NoMatch:
        return None
    x_type = view.graph.types[x]
    if not view.is_float(x) or view.graph.types[div.outputs[0]] != x_type or not x_type.shape:
        return None
    width, dtype = x_type.shape[-1], np_dtype(x_type.dtype)
    nodes, last, scale = [*denominator, div], div, np.ones(1, dtype)
    scaled = _affine(view, div.outputs[0], "Mul", width)
    if scaled is not None:
        last, scale = scaled
        nodes.append(last)
    name = view.fresh(f"{last.name}/scale")
    norm = Node("RMSNormalization", (x, name), last.outputs, {"axis": -1, "epsilon": eps},
                last.name)
    return Rewrite(frozenset(n.name for n in nodes), {last.name: (norm,)},
                   weights={name: scale.astype(dtype)})


def fuse_rms_norm(graph: Graph) -> Graph:
    """Requires a typed Graph, after simplify_pow and reciprocal_to_div. Ensures each
    x / sqrt(mean(x * x over the last axis) + eps), with its row-vector weight when one
    multiplies it, is one RMSNormalization(axis=-1) named and valued like the last node it
    absorbed (the weight is ones(1) when there is none); returns `graph` itself when nothing
    matched."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        if node.op == "Div" and not editor.claimed(node.name):
            editor.add(_match_rms(view, node))
    return editor.build()
