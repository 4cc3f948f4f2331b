"""Abstract expressions: what one element of a tensor or tile computes, as a term over the
program's inputs, with shapes and constant factors forgotten (Mirage OSDI'25 §4.3).

A term is a hashable nested tuple:

    ("var", name)              a kernel input (every element of it looks alike)
    ("add" | "sub" | "mul" | "div", a, b)
    ("exp" | "sqrt" | "silu" | "neg" | "sigmoid" | "gelu" | "gelu_tanh" | "tanh" | "erf", a)
    ("sum", n, a)              a sum of n elements of a (n >= 2, an int)
    ("max", n, a)              a max of n elements of a (n >= 2)

Conventions (each keeps a correct program's terms equal to its target's, see README below):

- Constant factors are dropped: ReduceMean is a sum, mul_scalar is its input, and
  rms(n, x) = sqrt(mean(x * x)) is spelled sqrt(sum(n, x * x)), like the workloads' rms_norm.
- Sizes canonicalize: sum(1, x) = x, sum(i, sum(j, x)) = sum(i * j, x) (same for max), so a
  matmul over a k-tile inside an accumulator over F iterations reads sum(F * k, x * w).
- An accumulator over a loop-invariant tile adds it up F times: a constant factor, so the
  walker passes forloop_range=1 for it (sum(1, x) = x).
- Safe softmax: a running max (accum_max_ld) reads max(F * L, x), like the final max, and the
  rescaling accumulators read like their plain twins: sum_i x_i * exp(m_i - m) is exactly
  what x would sum to had it used the final max m, and that is the term x already has.

    >>> library_term("MatMul", {}, [var("X"), var("W")], [(2, 32), (32, 48)])
    ('sum', 32, ('mul', ('var', 'X'), ('var', 'W')))
"""

from __future__ import annotations

import math
from typing import Callable

from ..constants import identity_affine, scalar_form
from ..mugraph.model import NO_DIM, MuGraph, block_shapes, kernel_shapes
from ..mugraph.ops import BLOCK_OPS, LIBRARY_OPS
from ..mugraph.unary import library_activation

Term = tuple

UNARY = ("exp", "sqrt", "silu", "neg", "sigmoid", "gelu", "gelu_tanh", "tanh", "erf", "relu")
BINARY = ("add", "sub", "mul", "div")
REDUCTIONS = ("sum", "max")


# ---- constructors (canonical) --------------------------------------------------------------

def var(name: str) -> Term:
    """A kernel input: ("var", name)."""
    return ("var", name)


def unary(op: str, a: Term) -> Term:
    if op not in UNARY:
        raise ValueError(f"{op!r} is not a unary term op ({', '.join(UNARY)})")
    return (op, a)


def binary(op: str, a: Term, b: Term) -> Term:
    if op not in BINARY:
        raise ValueError(f"{op!r} is not a binary term op ({', '.join(BINARY)})")
    return (op, a, b)


def reduction(op: str, n: int, a: Term) -> Term:
    """sum / max over n elements; merges nested reductions of the same kind, drops n = 1."""
    n = int(n)
    if n < 1:
        raise ValueError(f"a {op} over {n} elements")
    while a[0] == op:  # sum(i, sum(j, x)) = sum(i * j, x)
        n, a = n * a[1], a[2]
    return a if n == 1 else (op, n, a)


def rsum(n: int, a: Term) -> Term:
    return reduction("sum", n, a)


def rmax(n: int, a: Term) -> Term:
    return reduction("max", n, a)


def rms(n: int, a: Term) -> Term:
    """sqrt(mean of a * a over n elements), constant 1/n dropped: sqrt(sum(n, a * a))."""
    return ("sqrt", rsum(n, ("mul", a, a)))


def rms_norm(n: int, a: Term) -> Term:
    return ("div", a, rms(n, a))


def softmax(n: int, a: Term) -> Term:
    """The safe softmax over n elements: exp(a - max) / sum(exp(a - max))."""
    exp = ("exp", ("sub", a, reduction("max", n, a)))
    return ("div", exp, rsum(n, exp))


def layer_norm(n: int, a: Term) -> Term:
    """(a - mean) / sqrt(var + eps), constants (1/n, eps) dropped."""
    centered = ("sub", a, rsum(n, a))
    return ("div", centered, ("sqrt", rsum(n, ("mul", centered, centered))))


def show(term: Term) -> str:
    """A compact infix-free rendering, e.g. 'sum32(mul(X, W))'."""
    if term[0] == "var":
        return term[1]
    if term[0] in REDUCTIONS:
        return f"{term[0]}{term[1]}({show(term[2])})"
    return f"{term[0]}({', '.join(show(t) for t in term[1:])})"


# ---- kernel level: LIBRARY_OPS -------------------------------------------------------------

_LIBRARY_UNARY = {"Exp": "exp", "Sqrt": "sqrt", "Silu": "silu", "Neg": "neg"}
_LIBRARY_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


def library_term(op: str, attrs: dict, inputs: list[Term], input_shapes: list[tuple]) -> Term:
    """The term of a kernel-level library op's output (one LIBRARY_OPS row).

    MatMul -> sum(K, mul(a, b)); ReduceSum / ReduceMean -> sum(n, x) (the mean's 1/n is a
    constant); ReduceMax -> max(n, x); elementwise ops map one to one.
    """
    if op not in LIBRARY_OPS:
        raise ValueError(f"no abstract expression for library op {op!r}")
    attrs = {**LIBRARY_OPS[op].attrs, **attrs}
    if op in _LIBRARY_UNARY:
        return unary(_LIBRARY_UNARY[op], inputs[0])
    if library_activation(op, attrs) is not None:
        return unary(library_activation(op, attrs), inputs[0])
    if op in ("Scale", "Shift"):
        return inputs[0]  # constant factors and offsets are dropped
    if op in _LIBRARY_BINARY:
        return binary(_LIBRARY_BINARY[op], inputs[0], inputs[1])
    if op == "MatMul":
        return rsum(input_shapes[0][-1], ("mul", inputs[0], inputs[1]))
    shape = input_shapes[0]
    size = shape[attrs["dim"] % len(shape)]
    if op in ("ReduceSum", "ReduceMean"):
        return rsum(size, inputs[0])
    if op == "ReduceMax":
        return rmax(size, inputs[0])
    raise ValueError(f"no abstract expression for library op {op!r}")


# ---- block level: BLOCK_OPS ----------------------------------------------------------------

# accumulator -> number of elements it reduces, from (tile shape, forloop_range, dimx)
_ACCUM_SIZES: dict[str, Callable[[tuple, int, int], int]] = {
    "accum_sum": lambda shape, loop, dimx: loop,
    "accum_sum_rescale": lambda shape, loop, dimx: loop,
    "accum_sum_ld": lambda shape, loop, dimx: loop * shape[-1],
    "accum_sum_ld_rescale": lambda shape, loop, dimx: loop * shape[-1],
    "accum_rms_ld": lambda shape, loop, dimx: loop * shape[-1],
    "accum_max_ld": lambda shape, loop, dimx: loop * shape[-1],
    "accum_sum_todimx": lambda shape, loop, dimx: loop * shape[-1] // dimx,
}


def tile_term(op: str, attrs: dict, inputs: list[Term], input_shapes: list[tuple],
              forloop_range: int, reduction_dimx: int) -> Term:
    """The term of a block-level op's output tile (one BLOCK_OPS row).

    matmul -> sum(k_tile, mul(a, b)); rms_norm -> div(x, rms(L, x)); accum_sum -> sum(F, x);
    accum_sum_ld -> sum(F * L, x); accum_rms_ld -> rms(F * L, x); accum_sum_todimx ->
    sum(F * L / reduction_dimx, x); accum_max_ld -> max(F * L, x); the rescaling accumulators
    read like accum_sum / accum_sum_ld (their second input, the running max, is absorbed).
    Pass forloop_range=1 when the accumulated tile is loop-invariant (see the module doc).
    """
    if op not in BLOCK_OPS:
        raise ValueError(f"no abstract expression for tile op {op!r}")
    attrs = {**BLOCK_OPS[op].attrs, **attrs}
    if op in UNARY:
        return unary(op, inputs[0])
    if op in BINARY:
        return binary(op, inputs[0], inputs[1])
    if op == "square":
        return ("mul", inputs[0], inputs[0])
    if op in ("mul_scalar", "add_scalar"):
        return inputs[0]
    if op == "matmul":
        return rsum(input_shapes[0][-1], ("mul", inputs[0], inputs[1]))
    if op in ("reduce_sum", "reduce_max"):
        shape = input_shapes[0]
        return reduction(op[len("reduce_"):], shape[attrs["dim"] % len(shape)], inputs[0])
    if op == "rms_norm":
        return rms_norm(input_shapes[0][-1], inputs[0])
    if op == "softmax":
        return softmax(input_shapes[0][-1], inputs[0])
    if op == "layer_norm":
        return layer_norm(input_shapes[0][-1], inputs[0])
    if op in _ACCUM_SIZES:
        size = _ACCUM_SIZES[op](tuple(input_shapes[0]), forloop_range, reduction_dimx)
        if op == "accum_rms_ld":
            return rms(size, inputs[0])
        return reduction("max" if op == "accum_max_ld" else "sum", size, inputs[0])
    raise ValueError(f"no abstract expression for tile op {op!r}")


# ---- whole µGraphs -------------------------------------------------------------------------

def mugraph_terms(graph: MuGraph) -> dict[str, Term]:
    """Terms of every kernel tensor (by name) and every tile ("<kernel op index>/<tile>").

    Inputs are var(name). Walks kernel ops in order and each block graph's ops in order;
    an accumulator over a tile that does not depend on the for-loop uses forloop_range=1.
    """
    shapes = kernel_shapes(graph)
    terms: dict[str, Term] = {name: var(name) for name in graph.inputs}
    for index, op in enumerate(graph.ops):
        inputs = [terms[t] for t in op.inputs]
        in_shapes = [shapes[t] for t in op.inputs]
        if op.op != "block":
            terms[op.outputs[0]] = library_term(op.op, op.attrs, inputs, in_shapes)
            continue
        tiles = _block_terms(op.block, inputs, in_shapes)
        terms.update({f"{index}/{tile}": term for tile, term in tiles.items()})
        for name, out in zip(op.outputs, op.block.outputs):
            terms[name] = tiles[out.tile]
    return terms


def _block_terms(block, sources: list[Term], source_shapes: list[tuple]) -> dict[str, Term]:
    info = block_shapes(block, source_shapes)
    terms: dict[str, Term] = {}
    in_loop: dict[str, bool] = {}  # does the tile change from one iteration to the next?
    for inp in block.inputs:
        terms[inp.tile] = sources[inp.source]
        in_loop[inp.tile] = inp.fmap != NO_DIM and block.forloop_range > 1
    for op in block.ops:
        varies = any(in_loop[t] for t in op.inputs)
        loop = block.forloop_range
        if BLOCK_OPS[op.op].family == "accum":
            loop = loop if in_loop[op.inputs[0]] else 1
            varies = op.op == "accum_max_ld" and in_loop[op.inputs[0]]  # the running max
        terms[op.output] = tile_term(op.op, op.attrs, [terms[t] for t in op.inputs],
                                     [info.tiles[t] for t in op.inputs], loop,
                                     block.reduction_dimx)
        in_loop[op.output] = varies
    return terms


# ---- the target: IR graphs -----------------------------------------------------------------

_IR_UNARY = {"Exp": "exp", "Sqrt": "sqrt", "Silu": "silu", "Neg": "neg", "Sigmoid": "sigmoid",
             "Tanh": "tanh", "Erf": "erf", "Relu": "relu"}
_IR_BINARY = {"Add": "add", "Sub": "sub", "Div": "div"}


def _reduced_size(shape: tuple, axes) -> int:
    if axes is None or len(axes) == 0:
        return math.prod(shape)
    return math.prod(shape[a % len(shape)] for a in axes)


def _ir_mul(a: Term, b: Term) -> Term:
    for x, s in ((a, b), (b, a)):  # x * sigmoid(x) is silu(x)
        if s == ("sigmoid", x):
            return ("silu", x)
    return ("mul", a, b)


def ir_output_terms(graph) -> list[Term]:
    """Terms of an IR graph's outputs (the superoptimizer's target), inputs as var(name).

    Covers the ops the workloads use: MatMul, Add, Sub, Mul, Div, Exp, Sqrt, Neg, Silu,
    Sigmoid (x * sigmoid(x) -> silu(x)), Identity, ReduceSum / ReduceMean / ReduceMax (any
    axes; keepdims does not matter) and Softmax. Anything else is a ValueError naming the node.
    """
    terms: dict[str, Term] = {name: var(name) for name in graph.inputs}
    for name in graph.weights:
        terms.setdefault(name, var(name))
    for node in graph.nodes:
        where = f"node {node.name or '?'} ({node.op})"
        try:
            ins = [terms[t] for t in node.inputs]
        except KeyError as err:
            raise ValueError(f"{where}: reads {err.args[0]!r}, which has no term") from None
        shapes = [graph.types[t].shape for t in node.inputs]
        attrs = node.attrs
        if scalar_form(node, graph) is not None:
            out = terms[scalar_form(node, graph)[0]]  # constant factors and offsets dropped
        elif node.op == "Gelu":
            out = ("gelu_tanh" if attrs.get("approximate", "none") == "tanh" else "gelu", ins[0])
        elif node.op == "RMSNormalization":
            out = rms_norm(shapes[0][-1], ins[0])
            if node.inputs[1] not in identity_affine(graph, node):
                out = ("mul", out, ins[1])
        elif node.op == "LayerNormalization":
            out = layer_norm(shapes[0][-1], ins[0])
            identity = identity_affine(graph, node)
            for op, operand, term in zip(("mul", "add"), node.inputs[1:], ins[1:]):
                if operand not in identity:
                    out = (op, out, term)
        elif node.op in _IR_UNARY:
            out = (_IR_UNARY[node.op], ins[0])
        elif node.op in _IR_BINARY:
            out = (_IR_BINARY[node.op], ins[0], ins[1])
        elif node.op == "Mul":
            out = _ir_mul(ins[0], ins[1])
        elif node.op == "Identity":
            out = ins[0]
        elif node.op == "MatMul":
            out = rsum(shapes[0][-1], ("mul", ins[0], ins[1]))
        elif node.op in ("ReduceSum", "ReduceMean", "ReduceMax"):
            size = _reduced_size(shapes[0], attrs.get("axes"))
            out = reduction("max" if node.op == "ReduceMax" else "sum", size, ins[0])
        elif node.op == "Softmax":
            size = shapes[0][attrs.get("axis", -1) % len(shapes[0])]
            # safe: exp(x - max(x)), the spelling of the lowering and of numerically sound
            # kernels; a program that drops the max does not match it
            out = softmax(size, ins[0])
        else:
            raise ValueError(f"{where}: no abstract expression for IR op {node.op!r} "
                             "(pruning covers MatMul, elementwise math, reductions, Softmax)")
        if len(node.outputs) != 1:
            raise ValueError(f"{where}: {len(node.outputs)} outputs; abstract expressions "
                             "cover single-output ops")
        terms[node.outputs[0]] = out
    return [terms[name] for name in graph.outputs]
