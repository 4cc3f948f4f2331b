"""The reference lowering: an IR graph as an unfused µGraph, one library kernel per IR op.

Requires a graph whose tensors are all inputs (no weights) and whose ops are in LOWERINGS;
ensures a MuGraph with the same inputs (same order and shapes), the same output names, and the
same semantics under any Arith. Verification runs it as the reference in the finite field.
"""

from __future__ import annotations

from typing import Callable

from mlc.compiler.ir import Graph, Node

from ..mugraph import KernelOp, MuGraph, MuGraphError


class _Emitter:
    """Collects kernel ops; fresh names for the values a multi-op lowering adds."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.ops: list[KernelOp] = []
        self.names = set(graph.types)

    def emit(self, op: str, inputs, output: str, name: str, **attrs) -> str:
        self.ops.append(KernelOp(op, tuple(inputs), (output,), attrs, name=name))
        return output

    def fresh(self, base: str) -> str:
        name, n = base, 0
        while name in self.names:
            n += 1
            name = f"{base}.{n}"
        self.names.add(name)
        return name


def _one_axis(emitter: _Emitter, node: Node) -> int:
    """The single reduced axis of a ReduceX node that keeps its dims, else MuGraphError."""
    rank = len(emitter.graph.types[node.inputs[0]].shape)
    axes = node.attrs.get("axes")
    axes = tuple(range(rank)) if axes is None else tuple(axes)
    if node.attrs.get("keepdims", 1) != 1 or len(axes) != 1:
        raise MuGraphError(f"node {node.name!r} ({node.op}): µGraph reductions keep dims and "
                           f"reduce one axis; got axes={node.attrs.get('axes')}, "
                           f"keepdims={node.attrs.get('keepdims', 1)}")
    return axes[0] % rank


def _direct(emitter: _Emitter, node: Node, kernel: str) -> None:
    emitter.emit(kernel, node.inputs, node.outputs[0], node.name or kernel)


def _matmul(emitter: _Emitter, node: Node) -> None:
    ranks = [len(emitter.graph.types[name].shape) for name in node.inputs]
    if min(ranks) < 2:
        raise MuGraphError(f"node {node.name!r} (MatMul): µGraph matmuls need rank >= 2 "
                           f"operands, got ranks {ranks}")
    _direct(emitter, node, "MatMul")


def _reduce(emitter: _Emitter, node: Node) -> None:
    emitter.emit(node.op, node.inputs, node.outputs[0], node.name or node.op,
                 dim=_one_axis(emitter, node))


def _softmax(emitter: _Emitter, node: Node) -> None:
    """exp(x - max(x)) / sum(exp(x - max(x))) along the axis, as ref.softmax computes it."""
    out = node.outputs[0]
    name = node.name or "Softmax"
    rank = len(emitter.graph.types[node.inputs[0]].shape)
    dim = node.attrs.get("axis", -1) % rank
    row_max = emitter.emit("ReduceMax", node.inputs, emitter.fresh(f"{out}.max"),
                           f"{name}.max", dim=dim)
    shifted = emitter.emit("Sub", (node.inputs[0], row_max), emitter.fresh(f"{out}.shifted"),
                           f"{name}.sub")
    exp = emitter.emit("Exp", (shifted,), emitter.fresh(f"{out}.exp"), f"{name}.exp")
    total = emitter.emit("ReduceSum", (exp,), emitter.fresh(f"{out}.sum"), f"{name}.sum",
                         dim=dim)
    emitter.emit("Div", (exp, total), out, f"{name}.div")


# IR op -> lowering. Elementwise and matmul ops map 1:1 onto LIBRARY_OPS.
LOWERINGS: dict[str, Callable[[_Emitter, Node], None]] = {
    **{op: (lambda e, n, op=op: _direct(e, n, op))
       for op in ("Add", "Sub", "Mul", "Div", "Exp", "Sqrt", "Silu", "Neg")},
    "MatMul": _matmul,
    **{op: _reduce for op in ("ReduceSum", "ReduceMean", "ReduceMax")},
    "Softmax": _softmax,
}


def lower_to_mugraph(graph: Graph) -> MuGraph:
    """The unfused µGraph of `graph` (one library kernel per op; Softmax becomes five).

    >>> lower_to_mugraph(get_workload("rmsnorm_matmul:small")).ops[0].op
    'Mul'
    """
    if graph.weights:
        raise MuGraphError(f"graph {graph.name!r} has weights ({', '.join(graph.weights)}); "
                           "µGraph kernels take every tensor as an input: lift them to inputs")
    emitter = _Emitter(graph)
    for node in graph.nodes:
        lowering = LOWERINGS.get(node.op)
        if lowering is None:
            raise MuGraphError(f"node {node.name!r} ({node.op}): no µGraph lowering (supported: "
                               f"{', '.join(LOWERINGS)})")
        lowering(emitter, node)
    inputs = {name: tuple(t.shape) for name, t in graph.inputs.items()}
    return MuGraph(graph.name, inputs, tuple(emitter.ops), tuple(graph.outputs))
