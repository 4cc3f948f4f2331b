"""Fold a LayerNorm's (or RMSNorm's) affine weights into the matmuls that read it.

LayerNorm(x, gamma, beta) @ W = LayerNorm(x, 1, 0) @ (gamma[:, None] * W) + beta @ W, exact in
real arithmetic. After the fold the norm carries no kernel inputs (identity affine weights are
attributes at the µGraph level, see superopt/constants.py), so LayerNorm -> MatMul -> bias ->
GELU reads three tensors and fits one block kernel. The bias beta @ W then sits next to the
matmul's own bias, and merge_constant_adds adds the two vectors once, at compile time.
"""

from __future__ import annotations

import numpy as np

from mlc.compiler.ir.graph import Graph, Node

from .rewrite import Editor, GraphView, Rewrite


def _constant(view: GraphView, name: str) -> np.ndarray | None:
    weight = view.graph.weights.get(name)
    return None if weight is None or not view.is_float(name) else np.asarray(weight)


def _fold(view: GraphView, norm: Node) -> Rewrite | None:
    """The rewrite for one last-axis LayerNormalization with constant affine weights that at
    least one `MatMul(norm, W)` with a constant 2-D W reads, or None. Other readers (a
    residual Add, a graph output) keep reading the original norm; the row-wise norm is then
    recomputed per matmul, which costs far less than keeping it out of their kernels."""
    x, out = norm.inputs[0], norm.outputs[0]
    rank = view.graph.types[x].rank
    if len(norm.outputs) != 1 or norm.attrs.get("axis", -1) % rank != rank - 1:
        return None
    width = view.graph.types[x].shape[-1]
    gamma = _constant(view, norm.inputs[1])
    beta = _constant(view, norm.inputs[2]) if len(norm.inputs) > 2 else np.zeros(width)
    if gamma is None or beta is None or gamma.shape != (width,) or beta.shape != (width,):
        return None
    identity = bool(np.all(gamma == 1) and np.all(beta == 0))
    matmuls = {}
    for reader in {r.name: r for r in view.users.get(out, [])}.values():
        weight = _constant(view, reader.inputs[1]) if reader.op == "MatMul" else None
        if weight is not None and reader.inputs[0] == out and reader.inputs[1] != out \
                and weight.ndim == 2 and weight.shape[0] == width:
            matmuls[reader.name] = (reader, weight)
    if not matmuls:
        return None
    others = out in view.outputs or any(r.name not in matmuls for r in view.users.get(out, []))
    if identity and len(matmuls) == 1 and not others:
        return None  # nothing to fold and nobody to split from
    dtype = view.graph.types[x].dtype
    ones, zeros = view.fresh(f"{norm.name}.unit_scale"), view.fresh(f"{norm.name}.zero_bias")
    # one element each: they broadcast, and a symbolic search can rebind the row width
    new_weights = {ones: np.ones(1, dtype), zeros: np.zeros(1, dtype)}
    if norm.op != "LayerNormalization":
        del new_weights[zeros]  # RMSNormalization has no bias
    # Each matmul reads its own identity-affine norm, and other readers keep the original:
    # a fused matmul kernel then recomputes its rows' norm (cheap, row-wise) instead of also
    # writing the norm's output for the others (a second output no single kernel can own).
    # Matmuls whose results meet again (a gated MLP's gate and up) share one copy: they fuse
    # into one kernel together.
    emit = {norm.name: (norm,) if others else ()}
    copies: dict[str, str] = {}
    for reader, weight in matmuls.values():
        group = _meeting_group(view, reader, [node for node, _ in matmuls.values()])
        emit[reader.name] = ()
        if group not in copies:
            copies[group] = view.fresh(f"{out}.normed")
            operands = (x, ones, zeros) if norm.op == "LayerNormalization" else (x, ones)
            emit[reader.name] = (Node(norm.op, operands, (copies[group],), norm.attrs,
                                      view.fresh(f"{norm.name}.for_{reader.name}")),)
        normed = copies[group]
        if identity:  # only split: each matmul gets its own norm, the weights stay
            emit[reader.name] += (Node("MatMul", (normed, reader.inputs[1]), reader.outputs,
                                       {}, reader.name),)
            continue
        weight = weight.astype(np.float64)
        folded = view.fresh(f"{reader.inputs[1]}.scaled")
        new_weights[folded] = (gamma.astype(np.float64)[:, None] * weight).astype(dtype)
        if not np.any(beta):
            emit[reader.name] += (Node("MatMul", (normed, folded), reader.outputs, {},
                                       reader.name),)
            continue
        shift = view.fresh(f"{reader.name}.norm_bias")
        new_weights[shift] = (beta.astype(np.float64) @ weight).astype(dtype)
        product = view.fresh(f"{reader.outputs[0]}.unshifted")
        emit[reader.name] += (Node("MatMul", (normed, folded), (product,), {}, reader.name),
                              Node("Add", (product, shift), reader.outputs, {},
                                   view.fresh(f"{reader.name}.add_norm_bias")))
    return Rewrite(frozenset(emit), emit, {}, new_weights)


ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Silu", "Gelu", "Sigmoid", "Tanh", "Exp", "Neg"}


def _reach(view: GraphView, value: str, depth: int = 3) -> set[str]:
    """Nodes reached from `value` through at most `depth` elementwise ops."""
    seen: set[str] = set()
    frontier = [value]
    for _ in range(depth):
        nxt = []
        for name in frontier:
            for user in view.users.get(name, []):
                if user.op in ELEMENTWISE and user.name not in seen:
                    seen.add(user.name)
                    nxt.extend(user.outputs)
        frontier = nxt
    return seen


def _meeting_group(view: GraphView, reader: Node, readers: list[Node]) -> str:
    """A group label: the name of the first of `readers` whose result meets `reader`'s within
    a few elementwise ops (`reader` itself when none does)."""
    mine = _reach(view, reader.outputs[0])
    for node in readers:
        if node is reader or mine & _reach(view, node.outputs[0]):
            return node.name
    return reader.name


def fold_norm_affine(graph: Graph) -> Graph:
    """Requires a typed Graph; ensures the same function with every last-axis
    LayerNormalization read by MatMuls with constant 2-D weights rewritten to an identity-
    affine norm: gamma folded into those weights, beta into a bias Add after each matmul
    (float64 fold, rounded once to the weights' dtype); other readers keep the original."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        if node.op in ("LayerNormalization", "RMSNormalization"):
            editor.add(_fold(view, node))
    return editor.build()


def _add_constant(view: GraphView, node: Node) -> tuple[str, np.ndarray] | None:
    """(the other operand, the constant) of Add(y, c) / Add(c, y) with a constant vector c
    that does not change y's shape."""
    if node.op != "Add" or len(node.inputs) != 2:
        return None
    for y, c in (node.inputs, node.inputs[::-1]):
        value = _constant(view, c)
        if value is not None and y not in view.graph.weights \
                and view.graph.types[y].shape == view.graph.types[node.outputs[0]].shape:
            return y, value
    return None


def merge_constant_adds(graph: Graph) -> Graph:
    """Requires a typed Graph; ensures Add(Add(y, c1), c2) with constants c1, c2 (the inner
    Add read only by the outer, no graph output) becomes one Add(y, c1 + c2)."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        outer = _add_constant(view, node)
        if outer is None:
            continue
        inner_node = view.producers.get(outer[0])
        inner = _add_constant(view, inner_node) if inner_node is not None else None
        if inner is None or view.only_user(outer[0]) is not node:
            continue
        total = np.asarray(inner[1] + outer[1], dtype=view.graph.types[node.outputs[0]].dtype)
        if np.broadcast_shapes(total.shape, view.graph.types[inner[0]].shape) != \
                tuple(view.graph.types[inner[0]].shape):
            continue
        name = view.fresh(f"{node.name}.bias")
        merged = Node("Add", (inner[0], name), node.outputs, {}, node.name)
        editor.add(Rewrite(frozenset({inner_node.name, node.name}), {node.name: (merged,)},
                           {}, {name: total}))
    return editor.build()


def fold_constant_transposes(graph: Graph) -> Graph:
    """Requires a typed Graph; ensures every Transpose of a constant weight (torch.export
    spells each Linear as x @ W.T) is replaced by the transposed weight, so the matmuls it
    fed read a constant that later folds (fold_norm_affine) and region selection can see."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        if node.op != "Transpose" or node.inputs[0] not in graph.weights \
                or node.outputs[0] in view.outputs:
            continue
        name = view.fresh(f"{node.inputs[0]}.transposed")
        value = np.ascontiguousarray(np.transpose(graph.weights[node.inputs[0]],
                                                  node.attrs["perm"]))
        editor.add(Rewrite(frozenset({node.name}), {}, {node.outputs[0]: name}, {name: value}))
    return editor.build()
