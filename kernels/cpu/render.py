"""Render a µGraph to one C++ source for the host CPU: a function per graph-defined kernel
(block.py: OpenMP over grid blocks), a function per library op (whole-tensor loops, LIBRARY_EMIT
below), and one exported entry `mlc_run(const float* const* inputs, float* const* outputs)`
that calls them in order, with intermediate tensors in malloc'd scratch.

Generated code calls the hand-written `mlc_cpu.h`; every identifier in it is our own (`in0`,
`t3`, `mlc_op_1`), never a name from the model. Shapes are static: sizes and broadcast strides
are baked into the source.

Limitations: fp32 only; tiles and block-kernel tensors of rank <= 4; matmul batch dims must
match or be all 1; every tile gets its own arena slot (no liveness-based reuse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from mlc.compiler.superopt.mugraph.model import KernelOp, MuGraph, kernel_shapes
from mlc.compiler.superopt.mugraph.ops import LIBRARY_OPS
from mlc.compiler.superopt.mugraph.unary import library_activation

from .block import render_block
from .cexpr import ELEMENTWISE, batch_stride, loop_nest, scalar_attrs, split_at

PARALLEL_ELEMENTS = 1 << 15  # below this an OpenMP fork costs more than the loop

# library op -> the tile op whose C expression it applies; None: an activation, whose tile op
# follows from its attributes (unary.library_activation: Gelu's `approximate`)
LIBRARY_ELEMENTWISE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Exp": "exp",
                       "Sqrt": "sqrt", "Silu": "silu", "Neg": "neg", "Scale": "mul_scalar",
                       "Shift": "add_scalar", "Gelu": None, "Sigmoid": None, "Tanh": None,
                       "Erf": None, "Relu": None}


def _library_elementwise(library_op: str, tile_op: str | None) -> Callable:
    def emit(ins, out, attrs) -> list[str]:
        expr = ELEMENTWISE[tile_op or library_activation(library_op, attrs)]
        scalars = scalar_attrs(attrs)
        return loop_nest(out, ins, lambda o, idx: f"out0[{o}] = " + expr.format(
            *[f"in{n}[{i}]" for n, i in enumerate(idx)], **scalars) + ";",
            parallel=math.prod(out) >= PARALLEL_ELEMENTS)
    return emit


def _library_matmul(ins, out, attrs) -> list[str]:
    (m, k), n = ins[0][-2:], ins[1][-1]
    a_stride = batch_stride(ins[0], out[:-2], m * k)
    b_stride = batch_stride(ins[1], out[:-2], k * n)
    return [f"mlc::parallel_matmul<{math.prod(out[:-2])}, {m}, {n}, {k}, {a_stride}LL, "
            f"{b_stride}LL>(in0, in1, out0);"]


def _library_reduce(is_sum: bool, mean: bool) -> Callable:
    def emit(ins, out, attrs) -> list[str]:
        outer, extent, inner = split_at(ins[0], attrs["dim"] % len(ins[0]))
        lines = [f"mlc::reduce<{str(is_sum).lower()}, {outer}LL, {extent}, {inner}LL>"
                 "(in0, out0);"]
        if mean:  # divide, as the reference does, rather than multiply by 1/extent
            lines += loop_nest(out, [], lambda o, idx: f"out0[{o}] /= {extent}.0f;")
        return lines
    return emit


LIBRARY_EMIT: dict[str, Callable] = {
    **{name: _library_elementwise(name, tile) for name, tile in LIBRARY_ELEMENTWISE.items()},
    "MatMul": _library_matmul,
    "ReduceSum": _library_reduce(True, mean=False),
    "ReduceMean": _library_reduce(True, mean=True),
    "ReduceMax": _library_reduce(False, mean=False),
}


def render_library(name: str, kop: KernelOp, shapes: dict) -> str:
    """A `static void <name>(const float* in0.., float* out0)` computing one library op."""
    ins = [shapes[t] for t in kop.inputs]
    attrs = {**LIBRARY_OPS[kop.op].attrs, **kop.attrs}
    body = LIBRARY_EMIT[kop.op](ins, shapes[kop.outputs[0]], attrs)
    params = [f"const float* __restrict in{n}" for n in range(len(ins))] + \
        ["float* __restrict out0"]
    return "\n".join([f"static void {name}({', '.join(params)}) {{  // {kop.op}"]
                     + ["  " + line for line in body] + ["}"])


# ---- the module ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CpuModule:
    """A rendered source and how its entry point maps to µGraph tensors (the names stay on
    the Python side; the source only sees inputs[n] / outputs[n])."""

    source: str
    inputs: tuple[str, ...]  # order of mlc_run's `inputs`
    outputs: tuple[str, ...]  # order of mlc_run's `outputs` (distinct computed graph outputs)


def _pointers(graph: MuGraph, shapes: dict) -> tuple[dict[str, str], list[str], tuple]:
    """C pointer expression of every kernel-level tensor, scratch declarations, and the
    distinct computed graph outputs (written straight into the caller's arrays)."""
    pointer = {name: f"inputs[{n}]" for n, name in enumerate(graph.inputs)}
    outputs = tuple(dict.fromkeys(t for t in graph.outputs if t not in graph.inputs))
    pointer.update({name: f"outputs[{n}]" for n, name in enumerate(outputs)})
    scratch = []
    for kop in graph.ops:
        for tensor in kop.outputs:
            if tensor not in pointer:
                var = pointer[tensor] = f"s{len(scratch)}"
                scratch.append(f"float* {var} = (float*)mlc::arena({math.prod(shapes[tensor])});")
    return pointer, scratch, outputs


def render_module(graph: MuGraph) -> CpuModule:
    """The C++ source of a µGraph plus its entry point's tensor order (requires a valid
    µGraph; raises MuGraphError on what this renderer does not support)."""
    shapes = kernel_shapes(graph)
    pointer, scratch, outputs = _pointers(graph, shapes)
    functions, calls = [], []
    for index, kop in enumerate(graph.ops):
        name = f"mlc_op_{index}"
        if kop.op == "block":
            functions.append(render_block(name, kop.block, [shapes[t] for t in kop.inputs],
                                          len(kop.outputs)))
        else:
            functions.append(render_library(name, kop, shapes))
        calls.append(f"  {name}({', '.join(pointer[t] for t in kop.inputs + kop.outputs)});")
    frees = [f"  free({line.split()[1]});" for line in scratch]
    source = "\n".join(
        ["// generated by mlc: one µGraph for the host CPU", '#include "mlc_cpu.h"', ""]
        + [f + "\n" for f in functions]
        + ['extern "C" void mlc_run(const float* const* inputs, float* const* outputs) {']
        + ["  " + line for line in scratch] + calls + frees + ["}", ""])
    return CpuModule(source, tuple(graph.inputs), outputs)


def render_c(graph: MuGraph) -> str:
    """One C++ source for a µGraph (include `mlc_cpu.h` from this package's folder).

    >>> "mlc_run" in render_c(graph)          # doctest: +SKIP
    True
    """
    return render_module(graph).source
