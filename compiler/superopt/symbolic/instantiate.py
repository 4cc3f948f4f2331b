"""Instantiation (Prism §5): bind an sGraph's variables for one concrete shape.

Candidates per variable are the power-of-two divisors of the data dim it splits (the loop's
dim is what the grid left of its label; a loop tile keeps at least 8 elements). The Cartesian
product is filtered by the sGraph's constraints (exact divisions, block window, shared
memory); SPREAD (20) evenly spaced assignments are ranked by the cost model (the roofline
estimate; on a GPU a measured time would rank them instead), then SPREAD more between the
winner's neighbours. Prism narrows the candidates to dim/512 ... dim/8 (grid) and dim/256 ...
dim/16 (loop) instead; that window lost the best assignment at small dims here (d = 256),
and the constraints already bound the space. Kernels are priced
alone and their costs add up, so each block kernel is bound independently. A single-kernel
winner also gets its split-reduction variant (search/split.py) at this shape.

    >>> reference = get_workload("prism_rms_norm")
    >>> (best, *_) = instantiate_sgraph(sgraph, reference, data_sizes(reference), H100)
    >>> best.graph.ops[0].block.grid, best.est_time_us    # e.g. ((128, 1, 1), 17.37)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

from mlc.compiler.ir import Graph

from ..cost import estimate
from ..cost.hardware import GpuSpec
from ..mugraph.model import MuGraph, kernel_shapes, validate
from ..mugraph.ops import MuGraphError
from ..search.enumerate import Program
from ..search.generators import DEFAULT_CONFIG, GeneratorConfig, Schedule, _spread
from ..search.split import split_variants
from .dims import LOOP_VAR, SymbolicError, grid_variable, symbol
from .sgraph import SGraph, SymKernel, instantiate, violation

SPREAD = 20  # assignments ranked per kernel (Prism's autotuner profiles about 20)


@dataclass(frozen=True)
class Instance:
    """One sGraph bound for one shape: the µGraph, its estimated time, and whether it is the
    split-reduction variant."""

    graph: MuGraph
    est_time_us: float
    split: bool = False


def powers_of_two_dividing(size: int) -> list[int]:
    return [1 << k for k in range(size.bit_length()) if size % (1 << k) == 0]


def variable_candidates(size: int, role: str, config: GeneratorConfig = DEFAULT_CONFIG
                        ) -> list[int]:
    """Candidates for a variable splitting a dim of `size` (role "grid" or "loop"): its
    power-of-two divisors above 1 (an sGraph without the variable covers 1); a loop also
    keeps a tile of at least min_loop_tile (or half the dim) and at most max_forloop steps.
    The block window and shared memory are constraints, checked afterwards."""
    found = [c for c in powers_of_two_dividing(size) if c > 1]
    if role == "loop":
        floor = max(1, min(config.min_loop_tile, size // 2))
        found = [c for c in found if c <= config.max_forloop and size // c >= floor]
    return found


def assignments(kernel: SymKernel, sizes: dict, gpu: GpuSpec,
                config: GeneratorConfig = DEFAULT_CONFIG) -> tuple[list[dict], int]:
    """Every assignment of one kernel's variables that meets its constraints, ordered by
    block count (then values), and how many there are."""
    grid_vars = [v for v in kernel.variables if v != LOOP_VAR]
    if grid_vars != [grid_variable(label) for label in kernel.grid_labels]:
        return [], 0
    grid_choices = [variable_candidates(sizes[symbol(label)], "grid", config)
                    for label in kernel.grid_labels]
    feasible = []
    for grid in itertools.product(*grid_choices):
        values = dict(zip(grid_vars, grid))
        loops = [None]
        if kernel.loop_label is not None:
            if not isinstance(kernel.loop_label, int):
                return [], 0
            left = sizes[symbol(kernel.loop_label)]
            if kernel.loop_label in kernel.grid_labels:
                left //= values[grid_variable(kernel.loop_label)]
            loops = variable_candidates(left, "loop", config)
        for loop in loops:
            candidate = dict(values) if loop is None else {**values, LOOP_VAR: loop}
            try:
                if all(violation(c, sizes, candidate, gpu, config) is None
                       for c in kernel.constraints):
                    feasible.append(candidate)
            except SymbolicError:
                continue
    feasible.sort(key=lambda a: (math.prod(v for k, v in a.items() if k != LOOP_VAR),
                                 tuple(a.values())))
    return feasible, len(feasible)


def _best_assignment(feasible: list[dict], price) -> dict | None:
    """Rank SPREAD evenly spaced assignments by `price` (None: does not fit), then SPREAD
    more between the winner's neighbours; the cheapest (None if none fits)."""
    priced: dict[int, float | None] = {}

    def rank(indices):
        for i in indices:
            if i not in priced:
                priced[i] = price(feasible[i])

    positions = list(range(len(feasible)))
    rank(_spread(positions, SPREAD))
    timed = [i for i, t in priced.items() if t is not None]
    if not timed:
        return None
    best = min(timed, key=lambda i: (priced[i], i))
    below = max((i for i in priced if i < best), default=best)
    above = min((i for i in priced if i > best), default=best)
    rank(_spread(positions[below:above + 1], SPREAD))
    timed = [i for i, t in priced.items() if t is not None]
    best = min(timed, key=lambda i: (priced[i], i))
    return feasible[best]


def _kernel_time(sgraph: SGraph, index: int, sizes: dict, shapes: dict, assignment: dict,
                 gpu: GpuSpec) -> float | None:
    """Estimated time of kernel `index` alone under `assignment` (its inputs' shapes from
    `shapes`), None if it does not fit."""
    alone = dataclasses.replace(sgraph, generic=dataclasses.replace(
        sgraph.generic, ops=(sgraph.generic.ops[index],),
        outputs=sgraph.generic.ops[index].outputs), kernels=(sgraph.kernels[index],))
    inputs_needed = set(sgraph.generic.ops[index].inputs)
    try:
        graph = instantiate(alone, sizes, [assignment])
        graph = dataclasses.replace(graph, inputs={t: shapes[t] for t in inputs_needed})
        validate(graph, gpu.smem_per_block)
        return estimate(graph, gpu).time_us
    except (MuGraphError, SymbolicError, KeyError):
        return None


def _shapes_for(sgraph: SGraph, sizes: dict, upto: int) -> dict:
    """Kernel-level shapes before kernel `upto` (kernel shapes do not depend on the
    variables: grid and loop only tile them)."""
    probe = [None if k is None else {v: 1 for v in k.variables} for k in sgraph.kernels]
    graph = instantiate(sgraph, sizes, probe)
    return kernel_shapes(dataclasses.replace(graph, ops=graph.ops[:upto], outputs=()))


def instantiate_sgraph(sgraph: SGraph, reference: Graph, sizes: dict, gpu: GpuSpec,
                       labels: dict | None = None,
                       config: GeneratorConfig = DEFAULT_CONFIG) -> list[Instance]:
    """The best binding of `sgraph` for `reference`'s shape (data symbols bound by `sizes`),
    plus its split-reduction variant when one applies and `labels` (the reference's dim
    labels) are given; [] when no assignment meets the constraints."""
    chosen = []
    for index, kernel in enumerate(sgraph.kernels):
        if kernel is None:
            chosen.append(None)
            continue
        options, _ = assignments(kernel, sizes, gpu, config)
        try:
            shapes = _shapes_for(sgraph, sizes, index)
        except (MuGraphError, SymbolicError):
            return []
        best = _best_assignment(
            options, lambda a, i=index, s=shapes: _kernel_time(sgraph, i, sizes, s, a, gpu))
        if best is None:
            return []
        chosen.append(best)
    try:
        graph = instantiate(sgraph, sizes, chosen, name=reference.name)
        validate(graph, gpu.smem_per_block)
        time_us = estimate(graph, gpu).time_us
    except (MuGraphError, SymbolicError):
        return []
    found = [Instance(graph, time_us)]
    if labels is not None and len(graph.ops) == 1 and sgraph.kernels[0] is not None:
        kernel = sgraph.kernels[0]
        block = graph.ops[0].block
        schedule = Schedule(kernel.grid_labels, kernel.loop_label,
                            tuple(i.imap for i in block.inputs),
                            tuple(i.fmap for i in block.inputs),
                            ((block.grid, block.forloop_range),))
        program = Program(graph.ops, (schedule,), graph.outputs)
        for variant, variant_us in split_variants(program, reference, labels, gpu, config):
            found.append(Instance(variant, variant_us, split=True))
    return found
