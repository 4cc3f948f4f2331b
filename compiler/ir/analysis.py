"""Analyses over the op table: FLOPs and bytes per node, and graph-level totals."""

from __future__ import annotations

import math

from .graph import Graph, Node
from .ops import OPS
from .types import TensorType


def node_flops(node: Node, types: dict[str, TensorType]) -> int:
    """Floating-point operations of one node (a multiply-add counts 2)."""
    op = OPS[node.op]
    ins = [types[n] for n in node.inputs]
    outs = [types[n] for n in node.outputs]
    if node.op == "MatMul":
        inner = ins[0].shape[-1]
        return 2 * outs[0].numel * inner
    if node.op == "Gemm":
        inner = ins[0].shape[0] if node.attrs.get("transA") else ins[0].shape[1]
        return 2 * outs[0].numel * inner + (outs[0].numel if len(ins) > 2 else 0)
    if node.op == "Conv":
        weight = ins[1].shape
        return 2 * outs[0].numel * math.prod(weight[1:]) + (outs[0].numel if len(ins) > 2 else 0)
    if node.op in ("MaxPool", "AveragePool"):
        return outs[0].numel * math.prod(node.attrs["kernel_shape"])
    if op.kind == "reduction":
        return int(ins[0].numel * op.flops_per_element)
    return int(sum(t.numel for t in outs) * op.flops_per_element)


def node_bytes(node: Node, types: dict[str, TensorType]) -> int:
    """Bytes read and written by one node if it runs alone (no fusion)."""
    return sum(types[n].nbytes for n in node.inputs + node.outputs)


def graph_stats(graph: Graph) -> dict:
    """Totals for `mlc inspect`: nodes, op counts, params, weight bytes, FLOPs, bytes moved."""
    return {
        "nodes": len(graph.nodes),
        "ops": graph.op_counts(),
        "params": graph.num_params(),
        "weight_bytes": int(sum(w.nbytes for w in graph.weights.values())),
        "flops": int(sum(node_flops(n, graph.types) for n in graph.nodes)),
        "bytes_moved": int(sum(node_bytes(n, graph.types) for n in graph.nodes)),
    }
