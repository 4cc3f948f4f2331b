"""Size a complete program: pick each block kernel's (grid, forloop_range) from its schedule's
assignments by the cost model, then name the outputs after the reference's.

The enumeration shaped tiles with one probe assignment; every assignment of the same schedule
splits the same logical dims, so the program stays equivalent (its outputs' shapes must not
change, and the final µGraph is validated and verified anyway). Kernels are priced alone and
their costs add up, so each block kernel is tuned independently.
"""

from __future__ import annotations

import dataclasses

from mlc.compiler.ir import Graph

from ..cost import estimate
from ..cost.hardware import GpuSpec
from ..mugraph.model import KernelOp, MuGraph, kernel_shapes, validate
from ..mugraph.ops import MuGraphError
from .enumerate import Program


def _kernel_cost(op: KernelOp, shapes: dict, gpu: GpuSpec, dtype: str) -> float | None:
    """Estimated time of one kernel on its own, None if it does not fit the GPU."""
    single = MuGraph("kernel", {t: shapes[t] for t in op.inputs}, (op,), op.outputs, dtype)
    try:
        validate(single, gpu.smem_per_block)
        return estimate(single, gpu).time_us
    except MuGraphError:
        return None


def _sized(op: KernelOp, grid, loop) -> KernelOp:
    block = dataclasses.replace(op.block, grid=grid, forloop_range=loop)
    return dataclasses.replace(op, block=block)


def _best_size(op: KernelOp, schedule, shapes: dict, gpu: GpuSpec, dtype: str) -> KernelOp:
    """The cheapest assignment that keeps the kernel's output shapes (the probe if none)."""
    want = [shapes[t] for t in op.outputs]
    best, best_time = op, _kernel_cost(op, shapes, gpu, dtype)
    for grid, loop in schedule.sizes:
        sized = _sized(op, grid, loop)
        probe = MuGraph("kernel", {t: shapes[t] for t in op.inputs}, (sized,), op.outputs)
        try:
            got = kernel_shapes(probe)
        except MuGraphError:
            continue
        if [got[t] for t in op.outputs] != want:
            continue
        time_us = _kernel_cost(sized, shapes, gpu, dtype)
        if time_us is not None and (best_time is None or time_us < best_time):
            best, best_time = sized, time_us
    return best


def renamed(op: KernelOp, rename: dict[str, str]) -> KernelOp:
    """The kernel op with its input and output tensors renamed (others kept)."""
    return dataclasses.replace(op, inputs=tuple(rename.get(t, t) for t in op.inputs),
                               outputs=tuple(rename.get(t, t) for t in op.outputs))


def tune(program: Program, reference: Graph, gpu: GpuSpec,
         dtype: str = "float16") -> tuple[MuGraph, float] | None:
    """The program at its cheapest sizes, outputs named as the reference's, and its estimated
    time; None when no assignment fits the GPU."""
    inputs = {name: tuple(t.shape) for name, t in reference.inputs.items()}
    probe = MuGraph(reference.name, inputs, program.ops, program.outputs, dtype)
    shapes = kernel_shapes(probe)
    ops = [op if schedule is None else _best_size(op, schedule, shapes, gpu, dtype)
           for op, schedule in zip(program.ops, program.schedules)]
    rename = dict(zip(program.outputs, reference.outputs))
    ops = [renamed(op, rename) for op in ops]
    graph = MuGraph(reference.name, inputs, tuple(ops), tuple(reference.outputs), dtype)
    try:
        validate(graph, gpu.smem_per_block)
        return graph, estimate(graph, gpu).time_us
    except MuGraphError:
        return None
