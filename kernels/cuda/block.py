"""Block graph -> the fields of one `__global__` kernel: shared-memory layout, the prologue
(accumulator fills, loop-invariant loads), the for-loop body (tile loads, then the tile ops in
dependency levels separated by `__syncthreads()`), and the epilogue (accumulator finishing,
after-loop ops, stores). Each tile op becomes one helper call through BLOCK_EMIT.

Tiles and accumulators are fp32 in shared memory; a running max (accum_max_ld) also keeps its
per-row rescale factors exp(m_old - m_new), which the *_rescale accumulators multiply by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from mlc.compiler.superopt.mugraph.model import (
    NO_DIM,
    SMEM_DTYPE,
    BlockGraph,
    BlockOp,
    KernelOp,
    block_shapes,
    smem_slot_elements,
    smem_slots,
)
from mlc.compiler.superopt.mugraph.ops import BLOCK_OPS, MuGraphError, broadcast

from .cexpr import (
    ELEMENTWISE,
    MAX_TILE_RANK,
    batch_stride,
    broadcast_index,
    float_literal,
    padded4,
    row_major_strides,
    rows_cols,
    scalar_attrs,
    split_at,
)

FLOAT_BYTES = 4  # tiles and accumulators are fp32 in this first version
assert SMEM_DTYPE == "float32", "the helpers in mlc_helpers.cuh work on float tiles"


@dataclass
class _Block:
    """What the emitters see of one block graph: tile shapes and generated variable names."""

    graph: BlockGraph
    shapes: dict[str, tuple[int, ...]]
    var: dict[str, str] = field(default_factory=dict)  # model tile name -> t<n>
    scale_var: dict[str, str] = field(default_factory=dict)  # running max -> its rescale factors

    def rescale_factors(self, op: BlockOp) -> str:
        running_max = op.inputs[1]
        if running_max not in self.scale_var:
            raise MuGraphError(f"CUDA renderer: {op.op} needs the output of accum_max_ld as "
                               "its second input")
        if broadcast(self.shapes[op.inputs[0]], self.shapes[running_max]) != \
                self.shapes[op.inputs[0]]:
            raise MuGraphError(f"CUDA renderer: {op.op}: the running max does not broadcast "
                               "into the accumulated tile")
        return self.scale_var[running_max]


def _elementwise(b: _Block, op: BlockOp) -> str:
    out_shape = b.shapes[op.output]
    operands = [f"{b.var[t]}[{broadcast_index(out_shape, b.shapes[t])}]" for t in op.inputs]
    attrs = {**BLOCK_OPS[op.op].attrs, **op.attrs}
    expr = ELEMENTWISE[op.op].format(*operands, **scalar_attrs(attrs))
    return (f"mlc::for_each<{math.prod(out_shape)}>([&](int i) {{ "
            f"{b.var[op.output]}[i] = {expr}; }});")


def _matmul(b: _Block, op: BlockOp) -> str:
    a_shape, b_shape = (b.shapes[t] for t in op.inputs)
    out = b.shapes[op.output]
    (m, k), n = a_shape[-2:], b_shape[-1]
    a_stride = batch_stride(a_shape, out[:-2], m * k)
    b_stride = batch_stride(b_shape, out[:-2], k * n)
    a, w = (b.var[t] for t in op.inputs)
    return (f"mlc::tile_matmul<{math.prod(out[:-2])}, {m}, {n}, {k}, {a_stride}, {b_stride}>"
            f"({a}, {w}, {b.var[op.output]});")


def _reduce(operator: str) -> Callable[[_Block, BlockOp], str]:
    def emit(b: _Block, op: BlockOp) -> str:
        shape = b.shapes[op.inputs[0]]
        dim = {**BLOCK_OPS[op.op].attrs, **op.attrs}["dim"] % len(shape)
        outer, extent, inner = split_at(shape, dim)
        src, dst = b.var[op.inputs[0]], b.var[op.output]
        if inner == 1:
            return f"mlc::row_reduce<{operator}, {outer}, {extent}>({src}, {dst});"
        return f"mlc::strided_reduce<{operator}, {outer}, {extent}, {inner}>({src}, {dst});"
    return emit


def _rms_norm(b: _Block, op: BlockOp) -> str:
    rows, cols = rows_cols(b.shapes[op.inputs[0]])
    eps = float_literal({**BLOCK_OPS[op.op].attrs, **op.attrs}["eps"])
    return (f"mlc::rms_norm_rows<{rows}, {cols}>({b.var[op.inputs[0]]}, {b.var[op.output]}, "
            f"{eps});")


def _softmax(b: _Block, op: BlockOp) -> str:
    rows, cols = rows_cols(b.shapes[op.inputs[0]])
    return f"mlc::softmax_rows<{rows}, {cols}>({b.var[op.inputs[0]]}, {b.var[op.output]});"


def _layer_norm(b: _Block, op: BlockOp) -> str:
    rows, cols = rows_cols(b.shapes[op.inputs[0]])
    eps = float_literal({**BLOCK_OPS[op.op].attrs, **op.attrs}["eps"])
    return (f"mlc::layer_norm_rows<{rows}, {cols}>({b.var[op.inputs[0]]}, "
            f"{b.var[op.output]}, {eps});")


def _accum_sum(b: _Block, op: BlockOp) -> str:
    acc, x = b.var[op.output], b.var[op.inputs[0]]
    n = math.prod(b.shapes[op.output])
    return f"mlc::for_each<{n}>([&](int i) {{ {acc}[i] += {x}[i]; }});"


def _accum_rows(pre: str) -> Callable[[_Block, BlockOp], str]:
    def emit(b: _Block, op: BlockOp) -> str:
        rows, cols = rows_cols(b.shapes[op.inputs[0]])
        return (f"mlc::row_accumulate<{rows}, {cols}, {pre}>({b.var[op.inputs[0]]}, "
                f"{b.var[op.output]}, mlc::NoScale());")
    return emit


def _finalize_rms(b: _Block, op: BlockOp) -> str:
    acc = b.var[op.output]
    count = b.graph.forloop_range * b.shapes[op.inputs[0]][-1]  # sqrt(sum sq / (F * L))
    return (f"mlc::for_each<{math.prod(b.shapes[op.output])}>([&](int i) {{ "
            f"{acc}[i] = sqrtf({acc}[i] / {count}.0f); }});")


def _accum_todimx(b: _Block, op: BlockOp) -> str:
    rows, cols = rows_cols(b.shapes[op.inputs[0]])
    width = b.shapes[op.output][-1]
    return (f"mlc::accumulate_todimx<{rows}, {cols}, {width}>({b.var[op.inputs[0]]}, "
            f"{b.var[op.output]});")


def _running_max(b: _Block, op: BlockOp) -> str:
    rows, cols = rows_cols(b.shapes[op.inputs[0]])
    return (f"mlc::row_running_max<{rows}, {cols}>({b.var[op.inputs[0]]}, "
            f"{b.var[op.output]}, {b.scale_var[op.output]});")


def _accum_rescale(b: _Block, op: BlockOp) -> str:
    # acc = acc * exp(m_old - m_new) + x each iteration leaves sum_i x_i * exp(m_i - m_final)
    scale = b.rescale_factors(op)
    x, running_max = (b.shapes[t] for t in op.inputs)
    acc, src = b.var[op.output], b.var[op.inputs[0]]
    index = broadcast_index(x, running_max)
    return (f"mlc::for_each<{math.prod(x)}>([&](int i) {{ "
            f"{acc}[i] = {acc}[i] * {scale}[{index}] + {src}[i]; }});")


def _accum_rows_rescale(b: _Block, op: BlockOp) -> str:
    scale = b.rescale_factors(op)
    x, running_max = (b.shapes[t] for t in op.inputs)
    rows, cols = rows_cols(x)
    index = broadcast_index(b.shapes[op.output], running_max, "r")
    return (f"mlc::row_accumulate<{rows}, {cols}, mlc::Identity>({b.var[op.inputs[0]]}, "
            f"{b.var[op.output]}, [&](int r) {{ return {scale}[{index}]; }});")


@dataclass(frozen=True)
class TileEmit:
    """How one tile op becomes CUDA: its statement, and for accumulators the initial value
    (filled before the loop) and a finishing statement (run after the loop)."""

    step: Callable[[_Block, BlockOp], str]
    init: str | None = None
    finalize: Callable[[_Block, BlockOp], str] | None = None


BLOCK_EMIT: dict[str, TileEmit] = {
    # elementwise and matmul (in the loop or in the epilogue, by phase)
    **{name: TileEmit(_elementwise) for name in ELEMENTWISE},
    "matmul": TileEmit(_matmul),
    # reductions keep the reduced dim as size 1
    "reduce_sum": TileEmit(_reduce("mlc::SumOp")),
    "reduce_max": TileEmit(_reduce("mlc::MaxOp")),
    "rms_norm": TileEmit(_rms_norm),
    "softmax": TileEmit(_softmax),
    "layer_norm": TileEmit(_layer_norm),
    # for-loop accumulators: updated every iteration, read after the loop
    "accum_sum": TileEmit(_accum_sum, init="0.0f"),
    "accum_sum_ld": TileEmit(_accum_rows("mlc::Identity"), init="0.0f"),
    "accum_rms_ld": TileEmit(_accum_rows("mlc::Square"), init="0.0f", finalize=_finalize_rms),
    "accum_sum_todimx": TileEmit(_accum_todimx, init="0.0f"),
    "accum_max_ld": TileEmit(_running_max, init="mlc::neg_inf()"),
    "accum_sum_rescale": TileEmit(_accum_rescale, init="0.0f"),
    "accum_sum_ld_rescale": TileEmit(_accum_rows_rescale, init="0.0f"),
}


# ---- block graphs: layout, schedule, global memory -----------------------------------------

@dataclass(frozen=True)
class TileSlot:
    var: str
    offset: int  # floats from the start of dynamic shared memory
    comment: str


def _levels(ops: list[BlockOp], ready: set[str]) -> list[list[BlockOp]]:
    """Group ops by dependency depth; one __syncthreads() after each group suffices."""
    depth = {tile: 0 for tile in ready}
    groups: list[list[BlockOp]] = []
    for op in ops:
        level = 1 + max((depth[t] for t in op.inputs if t in depth), default=0)
        depth[op.output] = level
        groups += [[] for _ in range(level - len(groups))]
        groups[level - 1].append(op)
    return groups


def _with_syncs(b: _Block, groups: list[list[BlockOp]]) -> list[str]:
    lines = []
    for group in groups:
        lines += [BLOCK_EMIT[op.op].step(b, op) for op in group] + ["__syncthreads();"]
    return lines


def _tensor_offset(terms: list[tuple[str, int]]) -> str:
    return "".join(f" + {var} * {step}LL" for var, step in terms if step)


def _load(b: _Block, inp, source_shape, param: str) -> str:
    if len(source_shape) > MAX_TILE_RANK:
        raise MuGraphError(f"CUDA renderer: rank-{len(source_shape)} tensors are not supported "
                           f"(at most {MAX_TILE_RANK})")
    tile, strides = b.shapes[inp.tile], row_major_strides(source_shape)
    grid = b.graph.grid
    terms = [(f"blockIdx.{'xyz'[axis]}", source_shape[dim] // grid[axis] * strides[dim])
             for axis, dim in enumerate(inp.imap) if grid[axis] > 1 and dim != NO_DIM]
    if inp.fmap != NO_DIM:
        terms.append(("it", tile[inp.fmap] * strides[inp.fmap]))
    dims = ", ".join(map(str, padded4(tile, 1) + padded4(strides, 0)[:3]))
    return f"mlc::load_tile<{dims}>({b.var[inp.tile]}, {param}{_tensor_offset(terms)});"


def _store(b: _Block, out, out_shape, param: str) -> str:
    if len(out_shape) > MAX_TILE_RANK:
        raise MuGraphError(f"CUDA renderer: rank-{len(out_shape)} tensors are not supported")
    tile, strides = b.shapes[out.tile], row_major_strides(out_shape)
    terms = [(f"blockIdx.{'xyz'[axis]}", tile[dim] * strides[dim])
             for axis, dim in enumerate(out.omap) if b.graph.grid[axis] > 1]
    dims = ", ".join(map(str, padded4(tile, 1) + padded4(strides, 0)[:3]))
    return f"mlc::store_tile<{dims}>({param}{_tensor_offset(terms)}, {b.var[out.tile]});"


def _layout(b: _Block, info) -> tuple[list[TileSlot], int]:
    """Name every tile t<n> and give it a slot; rescale factors follow their running max.
    Slots, sizes and alignment are mugraph.model's one shared-memory rule (`smem_slots`), so
    validation and instantiation accept exactly what this layout fits."""
    slots, offset = [], 0
    for slot in smem_slots(b.graph, b.shapes):
        if slot.kind == "rescale":
            var = b.scale_var[slot.tile] = f"{b.var[slot.tile]}_rescale"
            comment = f"{slot.shape} exp(m_old - m_new)"
        else:
            var = b.var[slot.tile] = f"t{len(b.var)}"
            comment = (f"{slot.shape} input {len(slots)}, "
                       f"{'every iteration' if _walks(b.graph, slot.tile) else 'loop-invariant'}"
                       if slot.kind == "input" else
                       f"{slot.shape} {slot.kind}, {info.phase[slot.tile]}")
        slots.append(TileSlot(var, offset, comment))
        offset += smem_slot_elements(math.prod(slot.shape))
    return slots, offset * FLOAT_BYTES


def _walks(graph: BlockGraph, tile: str) -> bool:
    """Does the input tile change every loop iteration (it has an fmap)?"""
    return next(inp.fmap for inp in graph.inputs if inp.tile == tile) != NO_DIM


def render_block(index: int, kop: KernelOp, shapes: dict, smem_limit_bytes: int) -> dict:
    """Template fields of the kernel for one graph-defined kernel op."""
    graph = kop.block
    if graph.threads % 32 or not 32 <= graph.threads <= 1024:
        raise MuGraphError(f"kernel op #{index}: {graph.threads} threads per block; the CUDA "
                           "renderer needs a multiple of 32 up to 1024")
    sources = [shapes[t] for t in kop.inputs]
    info = block_shapes(graph, sources)
    b = _Block(graph, dict(info.tiles))
    tiles, smem = _layout(b, info)
    if smem > smem_limit_bytes:
        raise MuGraphError(f"kernel op #{index}: needs {smem:,} bytes of shared memory "
                           f"(fp32 tiles), the limit is {smem_limit_bytes:,}; use a larger grid "
                           "or forloop_range")
    accums = [op for op in graph.ops if BLOCK_OPS[op.op].family == "accum"]
    in_loop = [op for op in graph.ops if info.phase[op.output] in ("loop", "both")
               or BLOCK_OPS[op.op].family == "accum"]
    after = [op for op in graph.ops if op not in in_loop]
    walking = [inp for inp in graph.inputs if inp.fmap != NO_DIM]
    fixed = [inp for inp in graph.inputs if inp.fmap == NO_DIM]

    prologue = [f"mlc::fill<{math.prod(b.shapes[op.output])}>({b.var[op.output]}, "
                f"{BLOCK_EMIT[op.op].init});" for op in accums]
    prologue += [_load(b, inp, sources[inp.source], f"in{inp.source}") for inp in fixed]
    loop = [_load(b, inp, sources[inp.source], f"in{inp.source}") for inp in walking]
    loop += ["__syncthreads();"] if walking else []
    loop += _with_syncs(b, _levels(in_loop, {inp.tile for inp in graph.inputs}))
    finals = [BLOCK_EMIT[op.op].finalize(b, op) for op in accums if BLOCK_EMIT[op.op].finalize]
    epilogue = finals + (["__syncthreads();"] if finals else [])
    epilogue += _with_syncs(b, _levels(after, set()))
    epilogue += [_store(b, out, shape, f"out{n}")
                 for n, (out, shape) in enumerate(zip(graph.outputs, info.outputs))]
    return dict(kind="block", grid=tuple(graph.grid), threads=graph.threads,
                forloop_range=graph.forloop_range, smem_bytes=smem, tiles=tiles,
                prologue=prologue + (["__syncthreads();"] if prologue else []),
                loop=loop, epilogue=epilogue)
