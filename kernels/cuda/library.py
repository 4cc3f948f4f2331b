"""Library (kernel-level) ops -> one generic grid-stride kernel body each, calling the
helpers in mlc_helpers.cuh (elementwise with broadcasting, batched matmul, reductions)."""

from __future__ import annotations

import math
from typing import Callable

from mlc.compiler.superopt.mugraph.model import KernelOp
from mlc.compiler.superopt.mugraph.ops import LIBRARY_OPS
from mlc.compiler.superopt.mugraph.unary import library_activation

from .cexpr import ELEMENTWISE, batch_stride, broadcast_index, scalar_attrs, split_at

LIBRARY_THREADS = 256
LIBRARY_MAX_BLOCKS = 8192  # grid-stride loops cover the rest


# library op -> the tile op whose C expression it applies; None: an activation, whose tile op
# follows from its attributes (unary.library_activation: Gelu's `approximate`)
LIBRARY_ELEMENTWISE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Exp": "exp",
                       "Sqrt": "sqrt", "Silu": "silu", "Neg": "neg", "Scale": "mul_scalar",
                       "Shift": "add_scalar", "Gelu": None, "Sigmoid": None, "Tanh": None,
                       "Erf": None, "Relu": None}


def _library_elementwise(library_op: str, tile_op: str | None) -> Callable:
    def emit(ins, out, attrs) -> str:
        operands = [f"in{n}[{broadcast_index(out, shape)}]" for n, shape in enumerate(ins)]
        expr = ELEMENTWISE[tile_op or library_activation(library_op, attrs)].format(
            *operands, **scalar_attrs(attrs))
        return (f"mlc::grid_for_each<{math.prod(out)}LL>([&](long long i) {{ "
                f"out0[i] = {expr}; }});")
    return emit


def _library_matmul(ins, out, attrs) -> str:
    (m, k), n = ins[0][-2:], ins[1][-1]
    a_stride = batch_stride(ins[0], out[:-2], m * k)
    b_stride = batch_stride(ins[1], out[:-2], k * n)
    return (f"mlc::grid_matmul<{math.prod(out[:-2])}, {m}, {n}, {k}, {a_stride}LL, "
            f"{b_stride}LL>(in0, in1, out0);")


def _library_reduce(operator: str, mean: bool) -> Callable:
    def emit(ins, out, attrs) -> str:
        shape = ins[0]
        outer, extent, inner = split_at(shape, attrs["dim"] % len(shape))
        divisor = extent if mean else 1
        return (f"mlc::grid_reduce<{operator}, {outer}LL, {extent}, {inner}LL, {divisor}>"
                "(in0, out0);")
    return emit


LIBRARY_EMIT: dict[str, Callable] = {
    **{name: _library_elementwise(name, tile) for name, tile in LIBRARY_ELEMENTWISE.items()},
    "MatMul": _library_matmul,
    "ReduceSum": _library_reduce("mlc::SumOp", mean=False),
    "ReduceMean": _library_reduce("mlc::SumOp", mean=True),
    "ReduceMax": _library_reduce("mlc::MaxOp", mean=False),
}


def render_library(index: int, kop: KernelOp, shapes: dict) -> dict:
    ins = [shapes[t] for t in kop.inputs]
    out = shapes[kop.outputs[0]]
    attrs = {**LIBRARY_OPS[kop.op].attrs, **kop.attrs}
    blocks = max(1, min(-(-math.prod(out) // LIBRARY_THREADS), LIBRARY_MAX_BLOCKS))
    return dict(kind="library", op=kop.op, body=LIBRARY_EMIT[kop.op](ins, out, attrs),
                grid=(blocks, 1, 1), threads=LIBRARY_THREADS, smem_bytes=0)
