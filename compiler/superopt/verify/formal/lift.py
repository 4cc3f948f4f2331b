"""Lifting: a µGraph (or an IR graph, through its reference lowering) as terms over symbolic
grid and loop names, one term per graph output.

Block graphs lift Prism-style. Kernel k's grid axis a (size > 1) is the name "k{k}.g{x|y|z}"
and its for-loop (forloop_range > 1) is "k{k}.loop". An input tile is its kernel tensor
partitioned along imap[a] (or replicated) per grid axis, then partitioned along fmap (or
replicated) over the loop; tile ops are term ops; an accumulator reduces over the loop name
(accum_sum_todimx also folds its last dim: a partition along it reduced over a name); an
output tile is combined along omap[a] per grid axis. Size-1 axes and loops get no name; a
later kernel's axis that re-splits a dim an earlier kernel combined, into as many blocks,
reuses that kernel's name (see _Scope).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlc.compiler.ir import Graph

from ...mugraph.model import NO_DIM, KernelOp, MuGraph, block_shapes, kernel_shapes
from ...mugraph.ops import BLOCK_OPS, LIBRARY_OPS
from ...mugraph.unary import ACTIVATIONS, library_activation
from ..lowering import lower_to_mugraph
from .terms import Term, constant


class LiftError(ValueError):
    """An op the formal verifier has no term for (the graph is then "not proven")."""


def _rms_norm(x: Term, eps: float = 0.0) -> Term:
    mean = ("mean", ("mul", x, x), -1)
    return ("div", x, ("sqrt", ("shift", mean, constant(eps)) if eps else mean))


def _softmax(x: Term) -> Term:
    """The safe softmax over the last dim, as the reference lowering of IR Softmax spells it
    (max, sub, exp, sum, div), so a fused softmax tile op meets it term for term."""
    exp = ("exp", ("sub", x, ("max", x, -1)))
    return ("div", exp, ("sum", exp, -1))


def _layer_norm(x: Term, eps: float) -> Term:
    """(x - mean) / sqrt(mean((x - mean)^2) + eps) over the last dim, in the order of the
    reference lowering of IR LayerNormalization."""
    centered = ("sub", x, ("mean", x, -1))
    variance = ("mean", ("mul", centered, centered), -1)
    return ("div", centered, ("sqrt", ("shift", variance, constant(eps))))


_TILE_UNARY = {"exp": "exp", "silu": "silu", "sqrt": "sqrt", "neg": "neg",
               **{name: name for name in ACTIVATIONS}}
_TILE_BINARY = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "matmul": "matmul"}
_LIB_UNARY = {"Exp": "exp", "Sqrt": "sqrt", "Silu": "silu", "Neg": "neg"}
_LIB_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "MatMul": "matmul"}
_LIB_REDUCE = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max"}


def library_term(op: str, attrs: dict, inputs: list[Term], ranks: list[int]) -> Term:
    """The term of a kernel-level library op (a LIBRARY_OPS row)."""
    attrs = {**LIBRARY_OPS[op].attrs, **attrs}
    if op in _LIB_UNARY:
        return (_LIB_UNARY[op], inputs[0])
    if library_activation(op, attrs) is not None:
        return (library_activation(op, attrs), inputs[0])
    if op == "Scale":
        return ("scale", inputs[0], constant(attrs["scale"]))
    if op == "Shift":
        return ("shift", inputs[0], constant(attrs["value"]))
    if op in _LIB_BINARY:
        return (_LIB_BINARY[op], inputs[0], inputs[1])
    if op in _LIB_REDUCE:
        dim = attrs["dim"] % ranks[0] - ranks[0]
        return (_LIB_REDUCE[op], inputs[0], dim)
    raise LiftError(f"library op {op!r} has no formal term")


def _accumulator(op: str, x: Term, loop: str | None) -> Term:
    """An accumulator's term: a reduction over the loop name (none when the loop is trivial)."""
    over = (lambda t: ("reduce", t, loop)) if loop else (lambda t: t)
    if op == "accum_sum":
        return over(x)
    if op == "accum_sum_ld":
        return over(("sum", x, -1))
    if op == "accum_rms_ld":
        row_mean = ("mean", ("mul", x, x), -1)
        return ("sqrt", ("rmean", row_mean, loop) if loop else row_mean)
    raise LiftError(f"accumulator {op!r} has no formal term (only accum_sum, accum_sum_ld, "
                    "accum_rms_ld, accum_sum_todimx lift)")


def _tile_term(op: str, attrs: dict, inputs: list[Term], rank: int, loop: str | None) -> Term:
    if BLOCK_OPS[op].family == "accum":
        return _accumulator(op, inputs[0], loop)
    if op in _TILE_UNARY:
        return (_TILE_UNARY[op], inputs[0])
    if op == "square":
        return ("mul", inputs[0], inputs[0])
    if op in _TILE_BINARY:
        return (_TILE_BINARY[op], inputs[0], inputs[1])
    if op in ("reduce_sum", "reduce_max"):
        dim = {**BLOCK_OPS[op].attrs, **attrs}["dim"] % rank - rank
        return ("sum" if op == "reduce_sum" else "max", inputs[0], dim)
    attrs = {**BLOCK_OPS[op].attrs, **attrs}
    if op == "mul_scalar":
        return ("scale", inputs[0], constant(attrs["scale"]))
    if op == "add_scalar":
        return ("shift", inputs[0], constant(attrs["value"]))
    if op == "rms_norm":
        return _rms_norm(inputs[0], attrs.get("eps", 0.0))
    if op == "softmax":
        return _softmax(inputs[0])
    if op == "layer_norm":
        return _layer_norm(inputs[0], attrs["eps"])
    raise LiftError(f"tile op {op!r} has no formal term")


@dataclass
class _Scope:
    """Lifting state: each name's size, and per kernel tensor the names it was combined over
    (dim -> name), so a later kernel that splits the same dim into as many blocks reuses the
    name (its proof then covers every size that keeps the two equal, the given one included)."""

    sizes: dict[str, int] = field(default_factory=dict)
    combined: dict[str, dict[int, str]] = field(default_factory=dict)

    def name(self, wanted: str | None, fresh: str, size: int, taken: set[str]) -> str:
        chosen = wanted if wanted and self.sizes.get(wanted) == size and \
            wanted not in taken else fresh
        self.sizes[chosen] = size
        taken.add(chosen)
        return chosen


def _axis_names(kernel: int, op: KernelOp, ranks: list[int], scope: _Scope, taken: set):
    """One name per grid axis of size > 1 (None otherwise) and the loop's (None if F = 1)."""
    block = op.block
    names: list[str | None] = []
    for axis, size in enumerate(block.grid):
        if size == 1:
            names.append(None)
            continue
        reused = {scope.combined.get(op.inputs[i.source], {}).get(i.imap[axis] - ranks[i.source])
                  for i in block.inputs if i.imap[axis] != NO_DIM}
        wanted = reused.pop() if len(reused) == 1 else None
        names.append(scope.name(wanted, f"k{kernel}.g{'xyz'[axis]}", size, taken))
    loop = None
    if block.forloop_range > 1:
        loop = scope.name(None, f"k{kernel}.loop", block.forloop_range, taken)
    return names, loop


def _fold(kernel: int, op: KernelOp, x: Term, chunks: int, scope: _Scope, taken: set) -> Term:
    """accum_sum_todimx: the sum of `chunks` equal slices of the last dim, as a partition along
    the last dim and a reduction over it; the name is one the inputs were combined over along
    their last dim when the sizes agree (split-K partial results), else a fresh one."""
    candidates = [scope.combined.get(t, {}).get(-1) for t in op.inputs]
    wanted = next((c for c in candidates if c and scope.sizes.get(c) == chunks), None)
    name = scope.name(wanted, f"k{kernel}.fold{len(taken)}", chunks, taken)
    return ("reduce", ("partition", x, -1, name), name)


def lift_block(kernel: int, op: KernelOp, sources: list[Term], shapes: list[tuple],
               scope: _Scope) -> list:
    """Terms of one graph-defined kernel's outputs given its kernel-level input terms."""
    block = op.block
    ranks = [len(shape) for shape in shapes]
    taken: set[str] = set()
    axes, loop = _axis_names(kernel, op, ranks, scope, taken)
    info = block_shapes(block, shapes)
    tiles: dict[str, Term] = {}
    for inp in block.inputs:
        term, rank = sources[inp.source], ranks[inp.source]
        for name, dim in zip(axes, inp.imap):
            if name is not None:
                term = ("partition", term, dim - rank, name) if dim != NO_DIM else \
                    ("replicate", term, name)
        if loop is not None:
            term = ("partition", term, inp.fmap - rank, loop) if inp.fmap != NO_DIM else \
                ("replicate", term, loop)
        tiles[inp.tile] = term
    for tile_op in block.ops:
        inputs = [tiles[t] for t in tile_op.inputs]
        rank = len(info.tiles[tile_op.output])
        if tile_op.op == "accum_sum_todimx":
            summed = ("reduce", inputs[0], loop) if loop else inputs[0]
            width = info.tiles[tile_op.inputs[0]][-1]
            chunks = width // block.reduction_dimx
            term = summed if chunks == 1 else _fold(kernel, op, summed, chunks, scope, taken)
        else:
            term = _tile_term(tile_op.op, tile_op.attrs, inputs, rank, loop)
        tiles[tile_op.output] = term
    outputs = []
    for out, name_out in zip(block.outputs, op.outputs):
        term, rank = tiles[out.tile], len(info.tiles[out.tile])
        for name, dim in reversed(list(zip(axes, out.omap))):  # innermost partition first
            if name is not None:
                term = ("combine", term, dim - rank, name)
                scope.combined.setdefault(name_out, {})[dim - rank] = name
        outputs.append(term)
    return outputs


def _lift(graph: MuGraph) -> tuple[dict[str, Term], dict[str, int]]:
    shapes = kernel_shapes(graph)
    scope = _Scope()
    values: dict[str, Term] = {name: ("var", name) for name in graph.inputs}
    for index, op in enumerate(graph.ops):
        input_shapes = [shapes[t] for t in op.inputs]
        sources = [values[t] for t in op.inputs]
        if op.op == "block":
            results = lift_block(index, op, sources, input_shapes, scope)
        else:
            results = [library_term(op.op, op.attrs, sources, [len(s) for s in input_shapes])]
        values.update(zip(op.outputs, results))
    return {name: values[name] for name in graph.outputs}, scope.sizes


def name_sizes(graph: MuGraph) -> dict[str, int]:
    """The size of every grid, loop and fold name in graph's lifted terms (for evaluation)."""
    return _lift(graph)[1]


def lift_mugraph(graph: MuGraph) -> dict[str, Term]:
    """Terms of every output of a µGraph over ("var", input) leaves.

    Requires: a valid µGraph. Ensures: one term per graph output; LiftError names an op that
    has no term (accum_max_ld, the rescaling accumulators).
    """
    return _lift(graph)[0]


def reference_terms(graph: Graph) -> dict[str, Term]:
    """Terms of an IR graph's outputs, through its reference lowering (lowering.py)."""
    return lift_mugraph(lower_to_mugraph(graph))
