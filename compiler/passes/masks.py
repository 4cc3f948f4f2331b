"""Boolean attention masks as additive ones.

torch.export spells a masked softmax as Softmax(Where(mask, scores, -inf)). A Where is no
µGraph op, so it would cut the attention in two; scores + Where(mask, 0, -inf) is the same
value for finite scores (both give -inf where the mask is false) and keeps QKᵀ -> mask ->
softmax -> ·V one region, with the additive mask computed once outside it.
"""

from __future__ import annotations

import math

import numpy as np

from mlc.compiler.ir.graph import Graph, Node

from .rewrite import Editor, GraphView, Rewrite


def additive_masks(graph: Graph) -> Graph:
    """Requires a typed Graph; ensures every Where(mask, s, c) with a one-element constant
    c = -inf and s of the output's shape becomes Add(s, Where(mask, 0, c)) (exact for finite
    s; an infinite or NaN s could differ, which exported attention scores never are)."""
    view = GraphView(graph)
    editor = Editor(view)
    for node in graph.nodes:
        if node.op != "Where" or len(node.inputs) != 3:
            continue
        mask, scores, fill = node.inputs
        value = view.scalar(fill)
        out = node.outputs[0]
        if value is None or not (math.isinf(value) and value < 0) or scores in graph.weights \
                or graph.types[scores].shape != graph.types[out].shape:
            continue
        zero = view.fresh(f"{node.name}.zero")
        additive = view.fresh(f"{out}.additive")
        dtype = graph.types[scores].dtype
        emit = (Node("Where", (mask, zero, fill), (additive,), {}, view.fresh(f"{node.name}.mask")),
                Node("Add", (scores, additive), (out,), {}, node.name))
        editor.add(Rewrite(frozenset({node.name}), {node.name: emit}, {},
                           {zero: np.zeros((), dtype)}))
    return editor.build()
