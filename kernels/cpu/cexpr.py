"""C building blocks shared by the block and library emitters of the CPU renderer: literals,
the elementwise op table, and broadcasting loop nests whose innermost loop is contiguous (so
the compiler vectorizes it)."""

from __future__ import annotations

import math
from typing import Callable

from mlc.compiler.superopt.mugraph.ops import MuGraphError
from mlc.kernels.cuda.cexpr import ELEMENTWISE as CUDA_ELEMENTWISE

MAX_TILE_RANK = 4  # load_tile / store_tile take four padded dims

# tile op -> C expression over its operands {0}, {1}: the one table both C-family renderers
# use (the helpers it names, mlc::gelu & co., exist in mlc_cpu.h and mlc_helpers.cuh alike)
ELEMENTWISE = CUDA_ELEMENTWISE


def float_literal(value) -> str:
    """A C float literal; refuses what C cannot spell as one (inf, nan)."""
    value = float(value)
    if not math.isfinite(value):
        raise MuGraphError(f"CPU renderer: scalar {value} is not finite")
    return f"{value!r}f"


def scalar_attrs(attrs: dict) -> dict[str, str]:
    """The float attributes an ELEMENTWISE expression may name ({scale}, {value})."""
    return {key: float_literal(attrs[key]) if key in attrs else "" for key in ("scale", "value")}


def row_major_strides(shape) -> tuple[int, ...]:
    return tuple(math.prod(shape[d + 1:]) for d in range(len(shape)))


def padded4(values, fill) -> list:
    if len(values) > MAX_TILE_RANK:
        raise MuGraphError(f"CPU renderer: rank-{len(values)} tiles are not supported (at most "
                           f"{MAX_TILE_RANK})")
    return [fill] * (MAX_TILE_RANK - len(values)) + list(values)


def rows_cols(shape) -> tuple[int, int]:
    return math.prod(shape[:-1]), shape[-1]


def split_at(shape, dim) -> tuple[int, int, int]:
    """(outer, extent, inner) of a reduction over `dim`."""
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])


def batch_stride(operand, out_batch, matrix: int) -> int:
    """Elements between consecutive matrices of a matmul operand (0: one shared matrix)."""
    if math.prod(operand[:-2]) == 1:
        return 0
    padded = (1,) * (len(out_batch) - len(operand[:-2])) + tuple(operand[:-2])
    if padded != tuple(out_batch):
        raise MuGraphError(f"CPU renderer: matmul batch dims {operand[:-2]} broadcast only "
                           f"partly to {out_batch}; not supported")
    return matrix


def broadcast_strides(out_shape, in_shape) -> list[int]:
    """Strides of a row-major `in_shape` tensor read at each index of `out_shape` (numpy
    broadcasting, right-aligned; 0 along broadcast dims)."""
    padded = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    strides = row_major_strides(padded)
    return [0 if size == 1 else stride for size, stride in zip(padded, strides)]


def _merged_dims(out_shape, stride_sets) -> tuple[list[int], list[list[int]]]:
    """Fuse neighbouring dims that every operand walks contiguously, so a broadcast-free chain
    becomes one flat loop and a row broadcast two loops."""
    sizes = [s for s in out_shape] or [1]
    strides = [list(s) or [0] for s in stride_sets]
    d = len(sizes) - 1
    while d > 0:
        if all(s[d - 1] == s[d] * sizes[d] for s in strides):
            sizes[d - 1:d + 1] = [sizes[d - 1] * sizes[d]]
            for s in strides:
                s[d - 1:d + 1] = [s[d]]
        d -= 1
    return sizes, strides


def loop_nest(out_shape, in_shapes, body: Callable[[str, list[str]], str],
              parallel: bool = False, var: str = "i") -> list[str]:
    """C lines: loops over `out_shape` calling body(out_index, [in_index...]) innermost.

    The innermost loop is marked `omp simd`; `parallel` spreads the outer loops over threads.
    """
    stride_sets = [row_major_strides(out_shape)] + \
        [broadcast_strides(out_shape, shape) for shape in in_shapes]
    sizes, strides = _merged_dims(out_shape, stride_sets)
    names = [f"{var}{d}" for d in range(len(sizes))]

    def index(steps: list[int]) -> str:
        terms = [n if step == 1 else f"{n} * {step}LL" for n, step in zip(names, steps) if step]
        return " + ".join(terms) or "0"

    lines = []
    if parallel and len(sizes) > 1:
        lines.append(f"#pragma omp parallel for collapse({len(sizes) - 1}) schedule(static)")
    elif parallel:
        lines.append("#pragma omp parallel for simd schedule(static)")
    for depth, (name, size) in enumerate(zip(names, sizes)):
        if depth == len(sizes) - 1 and not (parallel and len(sizes) == 1):
            lines.append("#pragma omp simd")
        lines.append(f"for (long long {name} = 0; {name} < {size}LL; ++{name})")
    lines.append("  " + body(index(strides[0]), [index(s) for s in strides[1:]]))
    return lines
