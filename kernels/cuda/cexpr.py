"""C expressions shared by the block and library emitters: flat broadcast offsets, shape
splits, literals, and the elementwise op table."""

from __future__ import annotations

import math

from mlc.compiler.superopt.mugraph.ops import MuGraphError

MAX_TILE_RANK = 4  # load_tile / store_tile take four padded dims


def row_major_strides(shape) -> tuple[int, ...]:
    return tuple(math.prod(shape[d + 1:]) for d in range(len(shape)))


def broadcast_index(out_shape, in_shape, var: str = "i") -> str:
    """C expression: the flat offset into `in_shape` of flat element `var` of `out_shape`.

    >>> broadcast_index((2, 24), (2, 1))
    'i / 24'
    """
    out_shape = tuple(out_shape)
    padded = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    if padded == out_shape:
        return var
    out_strides, in_strides = row_major_strides(out_shape), row_major_strides(padded)
    terms = []
    for d, size in enumerate(padded):
        if size == 1:
            continue
        term = var if out_strides[d] == 1 else f"{var} / {out_strides[d]}"
        if math.prod(out_shape[:d]) > 1:
            term = f"({term}) % {size}" if " " in term else f"{term} % {size}"
        if in_strides[d] != 1:
            term = f"({term}) * {in_strides[d]}"
        terms.append(term)
    return " + ".join(terms) or "0"


def rows_cols(shape) -> tuple[int, int]:
    return math.prod(shape[:-1]), shape[-1]


def split_at(shape, dim) -> tuple[int, int, int]:
    """(outer, extent, inner) of a reduction over `dim`."""
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])


def batch_stride(operand, out_batch, matrix: int) -> int:
    batch = math.prod(operand[:-2])
    if batch == 1:
        return 0
    padded = (1,) * (len(out_batch) - len(operand[:-2])) + tuple(operand[:-2])
    if padded != tuple(out_batch):
        raise MuGraphError(f"CUDA renderer: matmul batch dims {operand[:-2]} broadcast only "
                           f"partly to {out_batch}; not supported")
    return matrix


def float_literal(value) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise MuGraphError(f"CUDA renderer: scalar {value} is not finite")
    return f"{value!r}f"


def padded4(values, fill) -> list:
    return [fill] * (MAX_TILE_RANK - len(values)) + list(values)


ELEMENTWISE = {  # tile op -> C expression over its operands {0}, {1} (already indexed)
    "exp": "expf({0})",
    "silu": "mlc::silu({0})",
    "sqrt": "sqrtf({0})",
    "square": "{0} * {0}",
    "neg": "-{0}",
    "mul_scalar": "{0} * {scale}",
    "add_scalar": "{0} + {value}",
    "gelu": "mlc::gelu({0})",
    "gelu_tanh": "mlc::gelu_tanh({0})",
    "sigmoid": "mlc::sigmoid({0})",
    "relu": "fmaxf({0}, 0.0f)",
    "tanh": "tanhf({0})",
    "erf": "erff({0})",
    "add": "{0} + {1}",
    "sub": "{0} - {1}",
    "mul": "{0} * {1}",
    "div": "{0} / {1}",
}


def scalar_attrs(attrs: dict) -> dict[str, str]:
    """The float attributes an ELEMENTWISE expression may name ({scale}, {value}) as C
    literals; absent ones are empty (no expression of that op names them)."""
    return {key: float_literal(attrs[key]) if key in attrs else "" for key in ("scale", "value")}
