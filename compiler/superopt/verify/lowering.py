"""The reference lowering: an IR graph as an unfused µGraph, one library kernel per IR op.

Requires a graph whose tensors are all inputs, except the constants constants.py lets a
lowering absorb (one-element operands -> Scale / Shift, identity LayerNorm affine weights),
and whose ops are in LOWERINGS;
ensures a MuGraph with the same inputs (same order and shapes), the same output names, and the
same semantics under any Arith. Verification runs it as the reference in the finite field.
"""

from __future__ import annotations

from typing import Callable

from mlc.compiler.ir import Graph, Node

from ..constants import absorbed_constants, scalar_form
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


def _binary(emitter: _Emitter, node: Node) -> None:
    """Mul / Div / Add / Sub: a Scale or Shift when one operand is a one-element constant."""
    form = scalar_form(node, emitter.graph)
    if form is None:
        _direct(emitter, node, node.op)
        return
    x, op, value = form
    attr = {"scale": value} if op == "Scale" else {"value": value}
    emitter.emit(op, (x,), node.outputs[0], node.name or op, **attr)


def _gelu(emitter: _Emitter, node: Node) -> None:
    emitter.emit("Gelu", node.inputs, node.outputs[0], node.name or "Gelu",
                 approximate=node.attrs.get("approximate", "none"))


def _layer_norm(emitter: _Emitter, node: Node) -> None:
    """(x - mean) / sqrt(var + eps) over the last axis (the `layer_norm` tile op's order),
    then the affine scale and bias unless they are constant ones / zeros."""
    x, out = node.inputs[0], node.outputs[0]
    rank = len(emitter.graph.types[x].shape)
    if node.attrs.get("axis", -1) % rank != rank - 1 or len(node.outputs) != 1:
        raise MuGraphError(f"node {node.name!r} (LayerNormalization): µGraph layer norms "
                           "normalize the last axis and have one output")
    name = node.name or "LayerNorm"
    dim = rank - 1
    step = iter(range(100))

    def fresh(kind):
        return emitter.fresh(f"{out}.{kind}{next(step)}")

    mean = emitter.emit("ReduceMean", (x,), fresh("mean"), f"{name}.mean", dim=dim)
    centered = emitter.emit("Sub", (x, mean), fresh("centered"), f"{name}.center")
    square = emitter.emit("Mul", (centered, centered), fresh("square"), f"{name}.square")
    variance = emitter.emit("ReduceMean", (square,), fresh("var"), f"{name}.var", dim=dim)
    padded = emitter.emit("Shift", (variance,), fresh("eps"), f"{name}.eps",
                          value=float(node.attrs.get("epsilon", 1e-5)))
    root = emitter.emit("Sqrt", (padded,), fresh("std"), f"{name}.std")
    identity = absorbed_constants(node, emitter.graph)
    affine = [(op, operand) for op, operand in zip(("Mul", "Add"), node.inputs[1:])
              if operand not in identity]
    value = emitter.emit("Div", (centered, root), out if not affine else fresh("normed"),
                         f"{name}.div")
    for k, (op, operand) in enumerate(affine):
        target = out if k == len(affine) - 1 else fresh("scaled")
        value = emitter.emit(op, (value, operand), target, f"{name}.{op.lower()}")


def _rms_norm(emitter: _Emitter, node: Node) -> None:
    """x / sqrt(mean(x * x) + eps) over the last axis (the `rms_norm` tile op's order), then
    the scale unless it is constant ones."""
    x, out = node.inputs[0], node.outputs[0]
    rank = len(emitter.graph.types[x].shape)
    if node.attrs.get("axis", -1) % rank != rank - 1:
        raise MuGraphError(f"node {node.name!r} (RMSNormalization): µGraph RMS norms "
                           "normalize the last axis")
    name = node.name or "RMSNorm"
    step = iter(range(100))

    def fresh(kind):
        return emitter.fresh(f"{out}.{kind}{next(step)}")

    square = emitter.emit("Mul", (x, x), fresh("square"), f"{name}.square")
    mean = emitter.emit("ReduceMean", (square,), fresh("mean"), f"{name}.mean", dim=rank - 1)
    padded = emitter.emit("Shift", (mean,), fresh("eps"), f"{name}.eps",
                          value=float(node.attrs.get("epsilon", 1e-5)))
    root = emitter.emit("Sqrt", (padded,), fresh("rms"), f"{name}.rms")
    identity = node.inputs[1] in absorbed_constants(node, emitter.graph)
    normed = emitter.emit("Div", (x, root), out if identity else fresh("normed"),
                          f"{name}.div")
    if not identity:
        emitter.emit("Mul", (normed, node.inputs[1]), out, f"{name}.mul")


# IR op -> lowering. Elementwise and matmul ops map 1:1 onto LIBRARY_OPS.
LOWERINGS: dict[str, Callable[[_Emitter, Node], None]] = {
    **{op: _binary for op in ("Add", "Sub", "Mul", "Div")},
    **{op: (lambda e, n, op=op: _direct(e, n, op))
       for op in ("Exp", "Sqrt", "Silu", "Neg", "Sigmoid", "Tanh", "Erf", "Relu")},
    "Gelu": _gelu,
    "LayerNormalization": _layer_norm,
    "RMSNormalization": _rms_norm,
    "MatMul": _matmul,
    **{op: _reduce for op in ("ReduceSum", "ReduceMean", "ReduceMax")},
    "Softmax": _softmax,
}


def lower_to_mugraph(graph: Graph) -> MuGraph:
    """The unfused µGraph of `graph` (one library kernel per op; Softmax becomes five).

    >>> lower_to_mugraph(get_workload("rmsnorm_matmul:small")).ops[0].op
    'Mul'
    """
    lifted = sorted({name for node in graph.nodes
                     for name in set(node.inputs) - absorbed_constants(node, graph)
                     if name in graph.weights})
    if lifted:
        raise MuGraphError(f"graph {graph.name!r} has weights ({', '.join(lifted)}); "
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
