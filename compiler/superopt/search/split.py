"""Split-reduction variants of complete single-kernel programs (flash-decoding, split-K).

A block graph whose for-loop walks a reduced dim R leaves few blocks when the output is small:
attention with 256 query rows has a handful of (batch, row-tile) blocks, each reading all of
K and V. The variant adds a grid axis over R: kernel 1 runs the loop part on each slice of R
and saves the accumulators' partial results, concatenated along their last dim; kernel 2
adds the partials up (accum_sum_ld for a row sum, accum_sum_todimx for a tile sum) and
replays the ops after the loop. Only sum accumulators combine this way (an rms or a max
does not add up). This is a rewrite of programs the enumeration found, not a second
enumeration level; the verifier checks every variant like any candidate.
"""

from __future__ import annotations

from ..cost import estimate
from ..cost.hardware import GpuSpec
from ..mugraph.model import (
    NO_DIM,
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    KernelOp,
    MuGraph,
    block_shapes,
    kernel_shapes,
    validate,
)
from ..mugraph.ops import BLOCK_OPS, MuGraphError
from .enumerate import Program
from .generators import DEFAULT_CONFIG, GeneratorConfig, grid_sizes, loop_ranges, op_labels

COMBINE = {"accum_sum_ld": "accum_sum_ld", "accum_sum": "accum_sum_todimx"}


def _tile_labels(block: BlockGraph, source_labels, tiles: dict) -> dict:
    labels = {i.tile: source_labels[i.source] for i in block.inputs}
    for op in block.ops:
        row = BLOCK_OPS[op.op]
        ins = [tiles[t] for t in op.inputs]
        labels[op.output] = op_labels(row.family, [labels[t] for t in op.inputs], ins,
                                      tiles[op.output], {**row.attrs, **op.attrs}, None)
    return labels


def _cost(graph: MuGraph, gpu: GpuSpec) -> float | None:
    try:
        validate(graph, gpu.smem_per_block)
        return estimate(graph, gpu).time_us
    except MuGraphError:
        return None


def split_variants(program: Program, reference, labels: dict, gpu: GpuSpec,
                   config: GeneratorConfig = DEFAULT_CONFIG) -> list[tuple[MuGraph, float]]:
    """The cheapest split-reduction variant of `program` (sized), or [] when none applies.
    `labels` holds dim labels of the reference's tensors (generators.dim_labels)."""
    if len(program.ops) != 1 or program.ops[0].block is None:
        return []
    op, schedule = program.ops[0], program.schedules[0]
    block = op.block
    reduced = schedule.loop_label
    out_labels = {label for name in reference.outputs for label in labels[name]}
    if reduced is None or reduced in out_labels or len(schedule.grid_labels) >= 3:
        return []
    accums = [o for o in block.ops if BLOCK_OPS[o.op].family == "accum"]
    if not accums or any(o.op not in COMBINE for o in accums):
        return []
    inputs = {name: tuple(t.shape) for name, t in reference.inputs.items()}
    info = block_shapes(block, [inputs[t] for t in op.inputs])
    tile_labels = _tile_labels(block, [labels[t] for t in op.inputs], info.tiles)
    partial = {o.output for o in accums}
    after = [o for o in block.ops if info.phase[o.output] == "after" and o.output not in partial]
    before = [o for o in block.ops if o not in after]
    if any(t in partial for o in before for t in o.inputs):
        return []
    sizes = {label: inputs[name][dim] for name in op.inputs
             for dim, label in enumerate(labels[name]) if label is not None}
    grid_labels = (*schedule.grid_labels, reduced)
    best = None
    for grid in grid_sizes([sizes[label] for label in grid_labels], gpu, config):
        slices = grid[-1]
        for loop in loop_ranges(sizes[reduced] // slices, config):
            graph = _build(op, block, grid, loop, grid_labels, tile_labels, partial, before,
                           after, reference, labels, inputs, gpu, config)
            if graph is not None and (best is None or graph[1] < best[1]):
                best = graph
    return [best] if best else []


def _build(op, block, grid, loop, grid_labels, tile_labels, partial, before, after, reference,
           labels, inputs, gpu, config):
    """Kernel 1 (loop part on R slices) and the cheapest kernel 2 for these sizes."""
    grid3 = tuple(grid) + (1,) * (3 - len(grid))
    axis = len(grid_labels) - 1  # the new grid axis, over the reduced label
    ins = []
    for inp in block.inputs:
        row = labels[op.inputs[inp.source]]
        imap = list(inp.imap)
        imap[axis] = row.index(grid_labels[-1]) if grid_labels[-1] in row else NO_DIM
        ins.append(BlockInput(inp.tile, inp.source, tuple(imap), inp.fmap))
    saved, names, kernel2_ops = [], [], []
    for tile in sorted(partial, key=[o.output for o in before].index):
        row = tile_labels[tile]
        omap = [row.index(label) if label in row else NO_DIM for label in grid_labels[:-1]]
        last = len(row) - 1
        if NO_DIM in omap or last in omap:
            return None
        saved.append(BlockOutput(tile, tuple(omap + [last]) + (NO_DIM,) * (2 - len(omap))))
        names.append(f"{tile}.part")
        accum = next(o.op for o in before if o.output == tile)
        kernel2_ops.append(BlockOp(COMBINE[accum], (f"{tile}.in",), tile))
    first = BlockGraph(grid3, loop, tuple(ins), tuple(before), tuple(saved))
    split = KernelOp("block", op.inputs, tuple(names), block=first, name="split")
    partials = MuGraph("split", inputs, (split,), tuple(names))
    try:
        shapes = kernel_shapes(partials)
    except MuGraphError:
        return None
    tiles = block_shapes(first, [inputs[t] for t in op.inputs]).tiles
    dimx = {tiles[o.output][-1] for o in before if o.output in partial and o.op == "accum_sum"}
    if len(dimx) > 1:
        return None
    k2_inputs = tuple(BlockInput(f"{out.tile}.in", i, out.omap[:axis] + (NO_DIM,) * (3 - axis))
                      for i, out in enumerate(saved))
    sizes = [shapes[names[0]][saved[0].omap[a]] for a in range(axis)]
    best = None
    for grid2 in grid_sizes(sizes, gpu, config):
        combine = BlockGraph(tuple(grid2) + (1,) * (3 - axis), 1, k2_inputs,
                             tuple(kernel2_ops) + tuple(after), block.outputs,
                             reduction_dimx=min(dimx) if dimx else 64)
        kernel2 = KernelOp("block", tuple(names), tuple(reference.outputs), block=combine,
                           name="combine")
        graph = MuGraph(reference.name, inputs, (split, kernel2), tuple(reference.outputs))
        time_us = _cost(graph, gpu)
        if time_us is not None and (best is None or time_us < best[1]):
            best = (graph, time_us)
    return best
