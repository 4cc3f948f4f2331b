"""Block graph -> one C++ function: an OpenMP loop over the grid blocks (collapsed), and in each
block the for-loop as the outer loop, tiles as dense buffers in a per-thread arena, each tile
op one statement from BLOCK_EMIT.

Accumulators are updated in the loop and finished after it. The *_rescale accumulators keep
a copy of their running-max tile from the previous iteration: acc = acc * exp(m_prev - m_now)
+ x leaves sum_i x_i * exp(m_i - m_final), the interpreter's semantics, for any tile computed
from a running max (not only accum_max_ld itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from mlc.compiler.superopt.mugraph.model import NO_DIM, BlockGraph, BlockOp, block_shapes
from mlc.compiler.superopt.mugraph.ops import BLOCK_OPS

from .cexpr import (
    ELEMENTWISE,
    batch_stride,
    float_literal,
    loop_nest,
    padded4,
    row_major_strides,
    rows_cols,
    scalar_attrs,
    split_at,
)

ALIGN_FLOATS = 16  # every tile starts on a 64-byte line


@dataclass
class _Block:
    """What the emitters see of one block graph: tile shapes and generated buffer names."""

    graph: BlockGraph
    shapes: dict[str, tuple[int, ...]]
    var: dict[str, str] = field(default_factory=dict)  # model tile name -> t<n>
    previous: dict[str, str] = field(default_factory=dict)  # rescale accum -> its m_prev copy

    def attrs(self, op: BlockOp) -> dict:
        return {**BLOCK_OPS[op.op].attrs, **op.attrs}


def _elementwise(b: _Block, op: BlockOp) -> list[str]:
    expr = ELEMENTWISE[op.op]
    scalars = scalar_attrs(b.attrs(op))
    ins = [b.var[t] for t in op.inputs]
    out = b.var[op.output]
    return loop_nest(b.shapes[op.output], [b.shapes[t] for t in op.inputs],
                     lambda o, idx: f"{out}[{o}] = " + expr.format(
                         *[f"{v}[{i}]" for v, i in zip(ins, idx)], **scalars) + ";")


def _matmul(b: _Block, op: BlockOp) -> list[str]:
    a_shape, b_shape = (b.shapes[t] for t in op.inputs)
    out = b.shapes[op.output]
    (m, k), n = a_shape[-2:], b_shape[-1]
    a_stride = batch_stride(a_shape, out[:-2], m * k)
    b_stride = batch_stride(b_shape, out[:-2], k * n)
    a, w = (b.var[t] for t in op.inputs)
    return [f"mlc::tile_matmul<{math.prod(out[:-2])}, {m}, {n}, {k}, {a_stride}LL, "
            f"{b_stride}LL>({a}, {w}, {b.var[op.output]});"]


def _reduce(is_sum: bool) -> Callable[[_Block, BlockOp], list[str]]:
    def emit(b: _Block, op: BlockOp) -> list[str]:
        shape = b.shapes[op.inputs[0]]
        outer, extent, inner = split_at(shape, b.attrs(op)["dim"] % len(shape))
        return [f"mlc::reduce<{str(is_sum).lower()}, {outer}LL, {extent}, {inner}LL>"
                f"({b.var[op.inputs[0]]}, {b.var[op.output]});"]
    return emit


def _row_norm(helper: str, with_eps: bool) -> Callable[[_Block, BlockOp], list[str]]:
    def emit(b: _Block, op: BlockOp) -> list[str]:
        rows, cols = rows_cols(b.shapes[op.inputs[0]])
        eps = f", {float_literal(b.attrs(op)['eps'])}" if with_eps else ""
        return [f"mlc::{helper}<{rows}, {cols}>({b.var[op.inputs[0]]}, {b.var[op.output]}{eps});"]
    return emit


def _accum_sum(b: _Block, op: BlockOp) -> list[str]:
    acc, x = b.var[op.output], b.var[op.inputs[0]]
    return loop_nest(b.shapes[op.output], [b.shapes[op.inputs[0]]],
                     lambda o, idx: f"{acc}[{o}] += {x}[{idx[0]}];")


def _accum_rows(square: bool) -> Callable[[_Block, BlockOp], list[str]]:
    def emit(b: _Block, op: BlockOp) -> list[str]:
        rows, cols = rows_cols(b.shapes[op.inputs[0]])
        return [f"mlc::row_accumulate<{rows}, {cols}, {str(square).lower()}>"
                f"({b.var[op.inputs[0]]}, {b.var[op.output]});"]
    return emit


def _finish_rms(b: _Block, op: BlockOp) -> list[str]:
    acc = b.var[op.output]
    count = b.graph.forloop_range * b.shapes[op.inputs[0]][-1]  # sqrt(sum sq / (F * L))
    return loop_nest(b.shapes[op.output], [],
                     lambda o, idx: f"{acc}[{o}] = sqrtf({acc}[{o}] / {count}.0f);")


def _accum_todimx(b: _Block, op: BlockOp) -> list[str]:
    rows, cols = rows_cols(b.shapes[op.inputs[0]])
    width = b.shapes[op.output][-1]
    return [f"mlc::accumulate_todimx<{rows}, {cols}, {width}>({b.var[op.inputs[0]]}, "
            f"{b.var[op.output]});"]


def _running_max(b: _Block, op: BlockOp) -> list[str]:
    rows, cols = rows_cols(b.shapes[op.inputs[0]])
    return [f"mlc::row_running_max<{rows}, {cols}>({b.var[op.inputs[0]]}, "
            f"{b.var[op.output]});"]


def _accum_rescale(b: _Block, op: BlockOp) -> list[str]:
    """acc = acc * exp(m_prev - m_now) + x (elementwise, or summed over the last dim)."""
    x, m = op.inputs
    acc, src, now, prev = b.var[op.output], b.var[x], b.var[m], b.previous[op.output]
    out_shape, m_shape = b.shapes[op.output], b.shapes[m]
    lines = ["if (it > 0) {"]
    lines += loop_nest(out_shape, [m_shape, m_shape], lambda o, idx: (
        f"{acc}[{o}] *= expf({prev}[{idx[0]}] - {now}[{idx[1]}]);"))
    lines.append("}")
    if op.op == "accum_sum_rescale":
        lines += loop_nest(out_shape, [b.shapes[x]],
                           lambda o, idx: f"{acc}[{o}] += {src}[{idx[0]}];")
    else:
        rows, cols = rows_cols(b.shapes[x])
        lines.append(f"mlc::row_accumulate<{rows}, {cols}, false>({src}, {acc});")
    lines.append(f"memcpy({prev}, {now}, sizeof(float) * {math.prod(m_shape)});")
    return lines


@dataclass(frozen=True)
class TileEmit:
    """How one tile op becomes C++: its statements, and for accumulators the initial value
    (filled before the loop) and finishing statements (run after the loop)."""

    step: Callable[[_Block, BlockOp], list[str]]
    init: str | None = None
    finish: Callable[[_Block, BlockOp], list[str]] | None = None


BLOCK_EMIT: dict[str, TileEmit] = {
    # elementwise and matmul (in the loop or after it, by phase)
    **{name: TileEmit(_elementwise) for name in ELEMENTWISE},
    "matmul": TileEmit(_matmul),
    # reductions keep the reduced dim as size 1; norms work on whole rows of the tile
    "reduce_sum": TileEmit(_reduce(True)),
    "reduce_max": TileEmit(_reduce(False)),
    "rms_norm": TileEmit(_row_norm("rms_norm_rows", with_eps=True)),
    "softmax": TileEmit(_row_norm("softmax_rows", with_eps=False)),
    "layer_norm": TileEmit(_row_norm("layer_norm_rows", with_eps=True)),
    # for-loop accumulators: updated every iteration, read after the loop
    "accum_sum": TileEmit(_accum_sum, init="0.0f"),
    "accum_sum_ld": TileEmit(_accum_rows(False), init="0.0f"),
    "accum_rms_ld": TileEmit(_accum_rows(True), init="0.0f", finish=_finish_rms),
    "accum_sum_todimx": TileEmit(_accum_todimx, init="0.0f"),
    "accum_max_ld": TileEmit(_running_max, init="-INFINITY"),
    "accum_sum_rescale": TileEmit(_accum_rescale, init="0.0f"),
    "accum_sum_ld_rescale": TileEmit(_accum_rescale, init="0.0f"),
}


# ---- one block graph -------------------------------------------------------------------------

def _arena(b: _Block) -> tuple[list[str], int]:
    """Name every tile t<n> (and each rescale copy p<n>) at an aligned arena offset."""
    lines, offset = [], 0

    def place(name: str, shape) -> None:
        nonlocal offset
        lines.append(f"float* __restrict {name} = arena + {offset};  // {tuple(shape)}")
        offset += -(-math.prod(shape) // ALIGN_FLOATS) * ALIGN_FLOATS

    for tile in [inp.tile for inp in b.graph.inputs] + [op.output for op in b.graph.ops]:
        b.var[tile] = f"t{len(b.var)}"
        place(b.var[tile], b.shapes[tile])
    for op in b.graph.ops:
        if op.op in ("accum_sum_rescale", "accum_sum_ld_rescale"):
            b.previous[op.output] = f"p{len(b.previous)}"
            place(b.previous[op.output], b.shapes[op.inputs[1]])
    return lines, offset


def _tile_move(b: _Block, tile: str, tensor_shape, maps, fmap: int, pointer: str,
               load: bool) -> str:
    """A load of an input tile (grid axes per imap, `it` along fmap) or a store per omap."""
    shape, strides = b.shapes[tile], row_major_strides(tensor_shape)
    grid = b.graph.grid
    # a grid axis splits the whole tensor dim first; the for-loop then walks inside a part
    terms = [(f"g{axis}", tensor_shape[dim] // grid[axis] * strides[dim])
             for axis, dim in enumerate(maps) if grid[axis] > 1 and dim != NO_DIM]
    if fmap != NO_DIM:
        terms.append(("it", shape[fmap] * strides[fmap]))
    offset = "".join(f" + {var} * {step}LL" for var, step in terms)
    dims = ", ".join(map(str, padded4(shape, 1) + [f"{s}LL" for s in padded4(strides, 0)[:3]]))
    padded4(tensor_shape, 1)  # refuses a tensor of too high a rank
    if load:
        return f"mlc::load_tile<{dims}>({b.var[tile]}, {pointer}{offset});"
    return f"mlc::store_tile<{dims}>({pointer}{offset}, {b.var[tile]});"


def render_block(name: str, graph: BlockGraph, sources: list, outputs: int) -> str:
    """A `static void <name>(const float* in0.., float* out0..)` computing one graph-defined
    kernel. Requires a valid block graph; `sources` are its kernel inputs' shapes."""
    info = block_shapes(graph, sources)
    b = _Block(graph, dict(info.tiles))
    arena_lines, floats = _arena(b)
    accums = [op for op in graph.ops if BLOCK_OPS[op.op].family == "accum"]
    in_loop = [op for op in graph.ops if info.phase[op.output] in ("loop", "both")
               or BLOCK_OPS[op.op].family == "accum"]
    after = [op for op in graph.ops if op not in in_loop]
    load = {inp.tile: _tile_move(b, inp.tile, sources[inp.source], inp.imap, inp.fmap,
                                 f"in{inp.source}", load=True) for inp in graph.inputs}
    body = [f"mlc::fill({b.var[op.output]}, {math.prod(b.shapes[op.output])}, "
            f"{BLOCK_EMIT[op.op].init});" for op in accums]
    body += [load[inp.tile] for inp in graph.inputs if inp.fmap == NO_DIM]
    body.append(f"for (int it = 0; it < {graph.forloop_range}; ++it) {{")
    body += ["  " + load[inp.tile] for inp in graph.inputs if inp.fmap != NO_DIM]
    body += ["  " + line for op in in_loop for line in BLOCK_EMIT[op.op].step(b, op)]
    body.append("}")
    for op in accums:
        body += BLOCK_EMIT[op.op].finish(b, op) if BLOCK_EMIT[op.op].finish else []
    for op in after:
        body += BLOCK_EMIT[op.op].step(b, op)
    body += [_tile_move(b, out.tile, shape, out.omap, NO_DIM, f"out{n}", load=False)
             for n, (out, shape) in enumerate(zip(graph.outputs, info.outputs))]
    params = [f"const float* __restrict in{n}" for n in range(len(sources))] + \
        [f"float* __restrict out{n}" for n in range(outputs)]
    gx, gy, gz = graph.grid
    lines = [f"static void {name}({', '.join(params)}) {{",
             f"  // grid {tuple(graph.grid)}, forloop_range {graph.forloop_range}",
             "  #pragma omp parallel",
             "  {",
             f"    float* arena = mlc::arena({floats});"]
    lines += ["    " + line for line in arena_lines]
    lines += ["    #pragma omp for collapse(3) schedule(static)",
              f"    for (int g0 = 0; g0 < {gx}; ++g0)",
              f"    for (int g1 = 0; g1 < {gy}; ++g1)",
              f"    for (int g2 = 0; g2 < {gz}; ++g2) {{"]
    lines += ["      " + line for line in body]
    lines += ["    }", "    free(arena);", "  }", "}"]
    return "\n".join(lines)
