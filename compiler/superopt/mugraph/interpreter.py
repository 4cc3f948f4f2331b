"""Execute a µGraph on any Arith backend, vectorized over blocks and loop iterations.

Every block-graph tile is held as one array with four leading axes (grid x, grid y, grid z,
iteration) before its tile dims; size-1 leading axes broadcast (a replicated input, a value
computed after the loop). So one numpy call evaluates a tile op for all blocks and iterations.
"""

from __future__ import annotations

import numpy as np

from .model import NO_DIM, BlockGraph, MuGraph, block_shapes, kernel_shapes
from .ops import BLOCK_OPS, MuGraphError
from .unary import ACTIVATIONS, library_activation

LEAD = 4  # grid x, grid y, grid z, loop iteration
ITER_AXIS = 3


def load_tiles(arith, value, grid, imap, fmap, forloop_range):
    """A kernel tensor as (gx, gy, gz, F, *tile) with size-1 axes where it is not split."""
    shape = arith.shape(value)
    split, position = [], {}
    for dim, size in enumerate(shape):
        for axis in range(3):
            if grid[axis] > 1 and imap[axis] == dim:
                position[("grid", axis)] = len(split)
                split.append(grid[axis])
                size //= grid[axis]
        if fmap == dim:
            position["iter"] = len(split)
            split.append(forloop_range)
            size //= forloop_range
        position[("tile", dim)] = len(split)
        split.append(size)
    lead_keys = [("grid", 0), ("grid", 1), ("grid", 2), "iter"]
    perm = [position[k] for k in lead_keys if k in position]
    perm += [position[("tile", d)] for d in range(len(shape))]
    arranged = arith.transpose(arith.reshape(value, tuple(split)), tuple(perm))
    lead = [split[position[k]] if k in position else 1 for k in lead_keys]
    tile = [split[position[("tile", d)]] for d in range(len(shape))]
    return arith.reshape(arranged, tuple(lead + tile))


def store_tiles(arith, value, grid, omap):
    """(gx, gy, gz, 1, *tile) block results -> the kernel output tensor (concat per omap)."""
    shape = arith.shape(value)
    tile = shape[LEAD:]
    order, merged = [], []
    for dim, size in enumerate(tile):
        axes = [a for a in range(3) if grid[a] > 1 and omap[a] == dim]
        order += axes + [LEAD + dim]
        merged.append(size * int(np.prod([grid[a] for a in axes])))
    squeezed_lead = [a for a in range(3) if grid[a] == 1 or omap[a] == NO_DIM]
    full = arith.broadcast_to(value, tuple(grid) + (1,) + tuple(tile))
    perm = order + squeezed_lead + [ITER_AXIS]
    arranged = arith.transpose(full, tuple(perm))
    return arith.reshape(arranged, tuple(merged))


def _tile_axes(rank: int, dims) -> tuple[int, ...]:
    return tuple(d - rank if d >= 0 else d for d in dims)


def _accumulate(arith, op, inputs, forloop_range, running, finals, reduction_dimx):
    """Block accumulators: reduce the iteration axis (and maybe the last dim)."""
    x = inputs[0]
    full = list(arith.shape(x))
    full[ITER_AXIS] = forloop_range
    x = arith.broadcast_to(x, tuple(full))  # a loop-invariant tile adds up F times
    name = op.op
    if name == "accum_sum":
        return arith.sum(x, (ITER_AXIS,))
    if name == "accum_sum_ld":
        return arith.sum(x, (ITER_AXIS, -1))
    if name == "accum_rms_ld":
        total = arith.sum(arith.mul(x, x), (ITER_AXIS, -1))
        return arith.sqrt(arith.divide_by_count(total, forloop_range * full[-1]))
    if name == "accum_sum_todimx":
        summed = arith.sum(x, (ITER_AXIS,))
        shape = arith.shape(summed)
        folded = arith.reshape(summed, shape[:-1] + (shape[-1] // reduction_dimx,
                                                      reduction_dimx))
        total = arith.sum(folded, (-2,))
        return arith.reshape(total, shape[:-1] + (reduction_dimx,))
    if name in ("accum_sum_rescale", "accum_sum_ld_rescale"):
        # sum_i x_i * exp(m_i - m_final): what rescaling by exp(m_old - m_new) each step leaves
        m_running = running[op.inputs[1]]
        m_final = finals[op.inputs[1]]
        scaled = arith.mul(x, arith.exp(arith.sub(m_running, m_final)))
        axes = (ITER_AXIS, -1) if name == "accum_sum_ld_rescale" else (ITER_AXIS,)
        return arith.sum(scaled, axes)
    raise MuGraphError(f"no semantics for accumulator {name!r}")


def _same_rank(arith, tiles: list) -> list:
    """Tiles of a lower rank get size-1 axes right after the lead axes. Tile ops broadcast
    their tile dims like numpy (right-aligned, ops.broadcast); on (lead..., *tile) arrays a
    plain numpy call would align a rank-1 bias or a rank-2 weight tile with the lead axes."""
    rank = max(len(arith.shape(t)) for t in tiles)
    aligned = []
    for tile in tiles:
        shape = arith.shape(tile)
        pad = (1,) * (rank - len(shape))
        aligned.append(arith.reshape(tile, shape[:LEAD] + pad + shape[LEAD:]) if pad else tile)
    return aligned


def _tile_op(arith, op, inputs, tile_rank):
    attrs = {**BLOCK_OPS[op.op].attrs, **op.attrs}
    a = inputs[0]
    unary = {"exp": arith.exp, "silu": arith.silu, "sqrt": arith.sqrt, "neg": arith.neg,
             "square": lambda v: arith.mul(v, v)}
    binary = {"add": arith.add, "sub": arith.sub, "mul": arith.mul, "div": arith.div,
              "matmul": arith.matmul}
    if op.op in unary:
        return unary[op.op](a)
    if op.op in binary:
        return binary[op.op](*_same_rank(arith, [a, inputs[1]]))
    if op.op == "mul_scalar":
        return arith.scale(a, attrs["scale"])
    if op.op == "add_scalar":
        return arith.shift(a, attrs["value"])
    if op.op in ACTIVATIONS:
        return arith.activation(op.op, a)
    if op.op in ("reduce_sum", "reduce_max"):
        axes = _tile_axes(tile_rank, (attrs["dim"] % tile_rank,))
        return (arith.sum if op.op == "reduce_sum" else arith.max)(a, axes)
    if op.op == "rms_norm":
        width = arith.shape(a)[-1]
        mean = arith.divide_by_count(arith.sum(arith.mul(a, a), (-1,)), width)
        if attrs["eps"]:
            mean = arith.shift(mean, attrs["eps"])
        return arith.div(a, arith.sqrt(mean))
    if op.op == "softmax":
        return row_softmax(arith, a)
    if op.op == "layer_norm":
        return row_layer_norm(arith, a, attrs["eps"])
    raise MuGraphError(f"no semantics for tile op {op.op!r}")


def row_softmax(arith, a):
    """exp(a - max) / sum(exp(a - max)) over the last dim (the lowering of IR Softmax)."""
    exp = arith.exp(arith.sub(a, arith.max(a, (-1,))))
    return arith.div(exp, arith.sum(exp, (-1,)))


def row_layer_norm(arith, a, eps: float):
    """(a - mean) / sqrt(mean((a - mean)^2) + eps) over the last dim, in the order the
    lowering of IR LayerNormalization computes it."""
    width = arith.shape(a)[-1]
    centered = arith.sub(a, arith.divide_by_count(arith.sum(a, (-1,)), width))
    variance = arith.divide_by_count(arith.sum(arith.mul(centered, centered), (-1,)), width)
    return arith.div(centered, arith.sqrt(arith.shift(variance, eps)))


def run_block(arith, block: BlockGraph, sources: list) -> list:
    """Outputs of one graph-defined kernel given its kernel-level input values."""
    info = block_shapes(block, [arith.shape(v) for v in sources])
    values = {}  # in-loop view of each tile (the running value for a running max)
    finals = {}  # after-loop view of each tile that has one
    for inp in block.inputs:
        values[inp.tile] = load_tiles(arith, sources[inp.source], block.grid, inp.imap,
                                      inp.fmap, block.forloop_range)
    for op in block.ops:
        phase = info.phase[op.output]
        if op.op == "accum_max_ld":
            x = values[op.inputs[0]]
            full = list(arith.shape(x))
            full[ITER_AXIS] = block.forloop_range
            row_max = arith.max(arith.broadcast_to(x, tuple(full)), (-1,))
            values[op.output] = arith.running_max(row_max, ITER_AXIS)
            finals[op.output] = arith.max(row_max, (ITER_AXIS,))
        elif BLOCK_OPS[op.op].family == "accum":
            finals[op.output] = _accumulate(arith, op, [values[t] for t in op.inputs],
                                            block.forloop_range, values, finals,
                                            block.reduction_dimx)
        else:
            rank = len(info.tiles[op.output])
            if phase in ("loop", "both"):
                values[op.output] = _tile_op(arith, op, [values[t] for t in op.inputs], rank)
            if phase in ("after", "both"):
                finals[op.output] = _tile_op(arith, op, [finals[t] for t in op.inputs], rank)
    return [store_tiles(arith, finals[out.tile], block.grid, out.omap) for out in block.outputs]


def _library_op(arith, op, inputs):
    from .ops import LIBRARY_OPS
    attrs = {**LIBRARY_OPS[op.op].attrs, **op.attrs}
    binary = {"MatMul": arith.matmul, "Add": arith.add, "Sub": arith.sub, "Mul": arith.mul,
              "Div": arith.div}
    unary = {"Exp": arith.exp, "Sqrt": arith.sqrt, "Silu": arith.silu, "Neg": arith.neg}
    if op.op in binary:
        return binary[op.op](*inputs)
    if op.op in unary:
        return unary[op.op](inputs[0])
    activation = library_activation(op.op, attrs)
    if activation is not None:
        return arith.activation(activation, inputs[0])
    if op.op == "Scale":
        return arith.scale(inputs[0], attrs["scale"])
    if op.op == "Shift":
        return arith.shift(inputs[0], attrs["value"])
    rank = len(arith.shape(inputs[0]))
    axis = (attrs["dim"] % rank,)
    if op.op == "ReduceSum":
        return arith.sum(inputs[0], axis)
    if op.op == "ReduceMax":
        return arith.max(inputs[0], axis)
    if op.op == "ReduceMean":
        return arith.divide_by_count(arith.sum(inputs[0], axis), arith.shape(inputs[0])[axis[0]])
    raise MuGraphError(f"no semantics for library op {op.op!r}")


def run_values(graph: MuGraph, inputs: dict, arith) -> dict:
    """Execute a µGraph on values already in arith's representation; returns every tensor."""
    kernel_shapes(graph)  # validates the whole graph before any arithmetic
    values = {name: inputs[name] for name in graph.inputs}
    for op in graph.ops:
        sources = [values[t] for t in op.inputs]
        results = run_block(arith, op.block, sources) if op.op == "block" else \
            [_library_op(arith, op, sources)]
        values.update(zip(op.outputs, results))
    return values


def run_mugraph(graph: MuGraph, inputs: dict[str, np.ndarray], arith) -> dict[str, np.ndarray]:
    """Execute a µGraph; inputs and outputs are numpy arrays (converted through arith)."""
    values = run_values(graph, {n: arith.from_numpy(inputs[n]) for n in graph.inputs}, arith)
    return {name: arith.to_numpy(values[name]) for name in graph.outputs}
