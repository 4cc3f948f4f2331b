"""The µGraph op tables: library ops at kernel level and tile ops at block level.

Each row says how many inputs an op takes, how its output shape follows from its inputs, and
which family it belongs to; the interpreter and the renderers dispatch on the op name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class MuGraphError(ValueError):
    """A µGraph breaks a rule (shapes that do not tile, bad maps, shared memory, paths...)."""


def broadcast(*shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise MuGraphError(f"shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def _matmul(shapes, attrs):
    a, b = shapes
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
        raise MuGraphError(f"matmul shapes {a} @ {b} do not match")
    return broadcast(a[:-2], b[:-2]) + (a[-2], b[-1])


def _elementwise(shapes, attrs):
    return broadcast(*shapes)


def _reduce_dim(shapes, attrs):
    shape = list(shapes[0])
    if not -len(shape) <= attrs["dim"] < len(shape):  # a wrapped dim would reduce another
        raise MuGraphError(f"dim {attrs['dim']} is not a dim of a rank-{len(shape)} tensor")
    dim = attrs["dim"] % len(shape)
    shape[dim] = 1
    return tuple(shape)


def _last_to_one(shapes, attrs):
    return tuple(shapes[0][:-1]) + (1,)


def _todimx(shapes, attrs):
    shape = shapes[0]
    width = attrs["reduction_dimx"]
    if shape[-1] % width:
        raise MuGraphError(f"last dim {shape[-1]} is not a multiple of reduction_dimx {width}")
    return tuple(shape[:-1]) + (width,)


def _rescale(shapes, attrs):
    x, running_max = shapes
    if broadcast(x, running_max) != tuple(x):
        raise MuGraphError(f"running max {running_max} must broadcast onto the tile {x}")
    return x


def _rescale_ld(shapes, attrs):
    x, running_max = shapes
    if broadcast(x, running_max) != tuple(x) or running_max[-1] != 1:
        raise MuGraphError(f"running max {running_max} must be one value per row of {x}")
    return tuple(x[:-1]) + (1,)


@dataclass(frozen=True)
class TileOp:
    """A block-level op: arity, shape rule, family, extra attributes with defaults."""

    name: str
    arity: int
    shape: Callable
    family: str  # unary | binary | matmul | reduce | norm | accum
    attrs: dict = field(default_factory=dict)
    flops_per_element: int = 1


def _row(name, arity, shape, family, flops=1, **attrs):
    return name, TileOp(name, arity, shape, family, attrs, flops)


BLOCK_OPS: dict[str, TileOp] = dict([
    # elementwise on tiles (binary ops broadcast size-1 dims)
    _row("exp", 1, _elementwise, "unary", 4),
    _row("silu", 1, _elementwise, "unary", 6),
    _row("sqrt", 1, _elementwise, "unary", 2),
    _row("square", 1, _elementwise, "unary"),
    _row("neg", 1, _elementwise, "unary"),
    _row("mul_scalar", 1, _elementwise, "unary", scale=1.0),
    # the activations real models use (GELU erf and tanh forms, sigmoid, tanh, erf) and a
    # constant shift (a norm's epsilon, GELU's "1 +"); see unary.py for their semantics
    _row("gelu", 1, _elementwise, "unary", 10),
    _row("gelu_tanh", 1, _elementwise, "unary", 12),
    _row("sigmoid", 1, _elementwise, "unary", 5),
    _row("tanh", 1, _elementwise, "unary", 4),
    _row("erf", 1, _elementwise, "unary", 8),
    _row("relu", 1, _elementwise, "unary"),
    _row("add_scalar", 1, _elementwise, "unary", value=0.0),
    _row("add", 2, _elementwise, "binary"),
    _row("sub", 2, _elementwise, "binary"),
    _row("mul", 2, _elementwise, "binary"),
    _row("div", 2, _elementwise, "binary"),
    # matmul over the last two dims; reductions keep the reduced dim as size 1
    _row("matmul", 2, _matmul, "matmul", 2),
    _row("reduce_sum", 1, _reduce_dim, "reduce", dim=-1),
    _row("reduce_max", 1, _reduce_dim, "reduce", dim=-1),
    # x / sqrt(mean(x^2 over the tile's last dim)): only right when the tile holds whole rows
    _row("rms_norm", 1, _elementwise, "norm", 4, eps=0.0),  # + eps inside the sqrt (Llama)
    # row-wise over the tile's last dim, so equally only right on whole rows: the safe softmax
    # exp(x - max) / sum(exp(x - max)), and (x - mean) / sqrt(var + eps) (LayerNorm, no affine)
    _row("softmax", 1, _elementwise, "norm", 7),
    _row("layer_norm", 1, _elementwise, "norm", 8, eps=1e-5),
    # for-loop accumulators: their outputs live after the loop
    _row("accum_sum", 1, _elementwise, "accum"),
    _row("accum_sum_ld", 1, _last_to_one, "accum"),
    _row("accum_rms_ld", 1, _last_to_one, "accum", 2),
    _row("accum_sum_todimx", 1, _todimx, "accum", reduction_dimx=64),
    _row("accum_max_ld", 1, _last_to_one, "accum"),
    _row("accum_sum_rescale", 2, _rescale, "accum", 5),
    _row("accum_sum_ld_rescale", 2, _rescale_ld, "accum", 5),
])

# Accumulators whose in-loop value (the running max) may feed other in-loop ops.
RUNNING_ACCUMS = {"accum_max_ld"}

# Kernel-level library ops: IR op names with the attributes the µGraph level supports.
LIBRARY_OPS: dict[str, TileOp] = dict([
    _row("MatMul", 2, _matmul, "matmul", 2),
    _row("Add", 2, _elementwise, "binary"),
    _row("Sub", 2, _elementwise, "binary"),
    _row("Mul", 2, _elementwise, "binary"),
    _row("Div", 2, _elementwise, "binary"),
    _row("Exp", 1, _elementwise, "unary", 4),
    _row("Sqrt", 1, _elementwise, "unary", 2),
    _row("Silu", 1, _elementwise, "unary", 6),
    _row("Neg", 1, _elementwise, "unary"),
    _row("Gelu", 1, _elementwise, "unary", 10, approximate="none"),
    _row("Sigmoid", 1, _elementwise, "unary", 5),
    _row("Tanh", 1, _elementwise, "unary", 4),
    _row("Erf", 1, _elementwise, "unary", 8),
    _row("Relu", 1, _elementwise, "unary"),
    # an IR Mul / Div / Add / Sub with a one-element constant operand (regions.py keeps the
    # constant in the µGraph as an attribute, not as a kernel input)
    _row("Scale", 1, _elementwise, "unary", scale=1.0),
    _row("Shift", 1, _elementwise, "unary", value=0.0),
    _row("ReduceSum", 1, _reduce_dim, "reduce", dim=-1),
    _row("ReduceMean", 1, _reduce_dim, "reduce", dim=-1),
    _row("ReduceMax", 1, _reduce_dim, "reduce", dim=-1),
])
