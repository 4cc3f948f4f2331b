"""Constant operands a µGraph keeps as attributes instead of kernel inputs.

A region's tensors all become kernel inputs, and a block kernel reads at most four. Exported
models are full of one-element constants (attention's 1/sqrt(d), GELU's 0.5, a norm's eps)
and of LayerNorm affine weights that are the identity after folding; spending an input on
them would stop most fusions. These helpers say which operands are such constants, so region
selection leaves them out of the region's inputs (they stay weights of its reference graph)
and the lowering writes them into Scale / Shift / LayerNorm attributes.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mlc.compiler.ir.graph import Graph, Node

FLOAT_KINDS = "f"
NORMS = ("LayerNormalization", "RMSNormalization")  # row norms with affine weights


def scalar_value(graph: Graph, name: str) -> float | None:
    """The value of a one-element float weight, else None."""
    weight = graph.weights.get(name)
    if weight is None or weight.size != 1 or weight.dtype.kind not in FLOAT_KINDS:
        return None
    value = float(np.asarray(weight).reshape(()))
    return value if np.isfinite(value) else None


def scalar_form(node: Node, graph: Graph) -> tuple[str, str, float] | None:
    """(x, "Scale" | "Shift", attribute) when `node` is x * c, c * x, x / c, x + c, c + x or
    x - c for a one-element constant c that does not change x's shape; else None."""
    if node.op not in ("Mul", "Div", "Add", "Sub") or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    out_shape = graph.types[node.outputs[0]].shape
    for x, c, swapped in ((a, b, False), (b, a, True)):
        value = scalar_value(graph, c)
        if value is None or scalar_value(graph, x) is not None:
            continue
        if graph.types[x].shape != out_shape:
            continue
        if node.op == "Mul":
            return x, "Scale", value
        if node.op == "Add":
            return x, "Shift", value
        if swapped:
            return None  # c / x and c - x are not a scale or a shift of x
        if node.op == "Div":
            return (x, "Scale", 1.0 / value) if value != 0 else None
        return x, "Shift", -value
    return None


def identity_affine(graph: Graph, node: Node) -> set[str]:
    """The LayerNormalization / RMSNormalization operands that are constant ones (scale) or
    zeros (bias)."""
    found = set()
    for position, neutral in ((1, 1.0), (2, 0.0)):
        if len(node.inputs) > position:
            weight = graph.weights.get(node.inputs[position])
            if weight is not None and np.all(np.asarray(weight) == neutral):
                found.add(node.inputs[position])
    return found


def absorbed_constants(node: Node, graph: Graph) -> set[str]:
    """Operands of `node` that its lowering turns into attributes (not kernel inputs)."""
    form = scalar_form(node, graph)
    if form is not None:
        return set(node.inputs) - {form[0]}
    if node.op in NORMS:
        return identity_affine(graph, node)
    return set()


def constant_digest(weight) -> list:
    """Shape, dtype and a hash of the values: regions that differ only in a constant (another
    scale factor or epsilon) must not share a search result."""
    array = np.ascontiguousarray(weight)
    return [list(array.shape), str(array.dtype),
            hashlib.sha256(array.tobytes()).hexdigest()[:16]]
