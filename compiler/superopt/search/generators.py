"""Candidate generators for the search, derived from shapes and the target GPU spec.

Dim labels: every input dim gets a label by union-find over the reference's unfused lowering
(elementwise ops unify aligned dims, matmul unifies the contracted pair, reductions end a dim),
so "the rows of X", "the rows of O" and "the columns of nothing" become one name. A schedule
picks labels, not per-tensor dims: each grid axis splits one label in every block input that
carries it (the others replicate), and the for-loop walks one label. That is Mirage's imap/fmap
space restricted to maps that split the same logical dim everywhere (the rest tile a product
into diagonal blocks, which no pruning rule would keep anyway).

Sizes are data: grid sizes from divisors of the labels' sizes, within a block-count window
(at least a quarter of the SMs, at most MAX_BLOCKS); forloop ranges from divisors of what the
grid leaves, with a minimum tile; input tiles must fit the GPU's shared memory per block.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from mlc.compiler.ir import Graph

from ..constants import scalar_form
from ..cost.hardware import GpuSpec
from ..mugraph.model import NO_DIM, MuGraph, smem_bytes_of
from ..mugraph.ops import BLOCK_OPS, LIBRARY_OPS, MuGraphError
from ..mugraph.unary import library_activation

Label = object  # an int for an input dim class, a tuple for a derived one; None: size-1 dim
Labels = tuple  # one Label per dim


@dataclass(frozen=True)
class GeneratorConfig:
    """Bounds of the schedule space; the GPU spec supplies SMs and shared memory."""

    max_grid_dims: int = 3
    max_blocks: int = 4096  # Mirage's bound on the grid
    min_blocks_per_sm: float = 0.25  # at least a quarter of the SMs busy
    min_loop_tile: int = 8  # a loop tile narrower than this starves the tensor cores
    max_forloop: int = 256
    max_sizes: int = 32  # (grid, forloop) assignments kept per schedule for tuning
    max_block_inputs: int = 4
    max_block_outputs: int = 2


DEFAULT_CONFIG = GeneratorConfig()


# ---- which ops to try: the reference's IR ops say which tile ops can appear ---------------

# IR op -> tile ops that implement it (or a piece of it) inside a block graph.
TILE_OPS_FOR = {
    "MatMul": ("matmul",),
    "Add": ("add",), "Sub": ("sub",), "Mul": ("mul",), "Div": ("div",),
    "Exp": ("exp",), "Silu": ("silu",), "Sqrt": ("sqrt",), "Neg": ("neg",),
    "ReduceSum": ("reduce_sum", "accum_sum_ld", "accum_sum_todimx"),
    "ReduceMean": ("rms_norm", "accum_rms_ld"),  # the mean of an RMS norm
    "ReduceMax": ("reduce_max", "accum_max_ld", "accum_sum_rescale", "accum_sum_ld_rescale"),
    "Softmax": ("softmax",),  # a row-wise tile op: the tile must hold whole rows
    "Sigmoid": ("sigmoid",), "Tanh": ("tanh",), "Erf": ("erf",), "Relu": ("relu",),
    "LayerNormalization": ("layer_norm", "mul", "add"),
    "RMSNormalization": ("rms_norm", "mul"),
}
# constant forms (constants.scalar_form) -> the tile op that applies the constant
SCALAR_FORM_TILE_OPS = {"Scale": "mul_scalar", "Shift": "add_scalar"}
SCALAR_TILE_OPS = tuple(SCALAR_FORM_TILE_OPS.values())
ALWAYS_TILE_OPS = ("accum_sum",)  # every path needs an accumulator


def tile_ops_for(reference: Graph) -> tuple[str, ...]:
    """Tile ops worth trying for `reference`, in BLOCK_OPS table order (the canonical order)."""
    wanted = set(ALWAYS_TILE_OPS)
    for node in reference.nodes:
        form = scalar_form(node, reference)
        if form is not None:
            wanted.add(SCALAR_FORM_TILE_OPS[form[1]])
        elif node.op == "Gelu":
            wanted.add(library_activation("Gelu", node.attrs))
        else:
            wanted.update(TILE_OPS_FOR.get(node.op, ()))
    return tuple(op for op in BLOCK_OPS if op in wanted)


def constant_uses(reference: Graph) -> dict[tuple[str, float], int]:
    """(constant tile op, value) -> how many times the reference applies that constant."""
    uses: dict[tuple[str, float], int] = {}
    for node in reference.nodes:
        form = scalar_form(node, reference)
        if form is not None:
            key = (SCALAR_FORM_TILE_OPS[form[1]], form[2])
            uses[key] = uses.get(key, 0) + 1
    return uses


def constant_choices(reference: Graph) -> dict[str, tuple[float, ...]]:
    """The constants tile ops may take, from the reference (attribute -> values): mul_scalar
    scales, add_scalar shifts, layer_norm epsilons. A candidate only ever uses the
    reference's own constants, so the verifier compares like with like."""
    found: dict[str, list[float]] = {"scale": [], "value": [], "eps": []}
    for node in reference.nodes:
        form = scalar_form(node, reference)
        if form is not None:
            found["scale" if form[1] == "Scale" else "value"].append(form[2])
        elif node.op in ("LayerNormalization", "RMSNormalization"):
            found["eps"].append(float(node.attrs.get("epsilon", 1e-5)))
    return {attr: tuple(dict.fromkeys(values)) for attr, values in found.items()}


def library_ops_for(reference: Graph) -> tuple[str, ...]:
    """Library ops the reference's unfused lowering uses (IR op names, plus Scale / Shift for
    constant operands and the pieces of a LayerNormalization)."""
    from ..verify.lowering import lower_to_mugraph

    used = {op.op for op in lower_to_mugraph(reference).ops}
    return tuple(op for op in LIBRARY_OPS if op in used)


# ---- dim labels ----------------------------------------------------------------------------

class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _aligned(out_rank: int, shapes, dim: int):
    """(input index, input dim) pairs right-aligned with output dim `dim` (numpy broadcast)."""
    for index, shape in enumerate(shapes):
        other = dim - (out_rank - len(shape))
        if other >= 0:
            yield index, other


def _edges(family: str, shapes, out_shape, attrs):
    """(input index, input dim, output dim) triples that carry the same logical dim, plus
    contracted (input, dim, input, dim) pairs, for one op of `family`."""
    rank = len(out_shape)
    same, contracted = [], []
    if family == "matmul":
        a, b = shapes
        for dim in range(rank - 2):
            same += [(i, d, dim) for i, d in _aligned(rank - 2, [a[:-2], b[:-2]], dim)]
        same += [(0, len(a) - 2, rank - 2), (1, len(b) - 1, rank - 1)]
        contracted.append((0, len(a) - 1, 1, len(b) - 2))
        return same, contracted
    ends = set()
    if family == "reduce":
        ends.add(attrs.get("dim", -1) % rank)
    elif family == "accum" and out_shape[-1:] != shapes[0][-1:]:
        ends.add(rank - 1)  # *_ld accumulators end the last dim (todimx folds it)
    for dim in range(rank):
        if dim not in ends:
            same += [(i, d, dim) for i, d in _aligned(rank, shapes, dim)]
    return same, contracted


def dim_labels(baseline: MuGraph) -> dict[str, Labels]:
    """Label per dim of every tensor of `baseline` (a µGraph of library ops, e.g. the unfused
    lowering): dims that the ops tie together share a label; size-1 dims get None.

    >>> dim_labels(lower_to_mugraph(get_workload("rmsnorm_matmul")))["W"]
    (1, 2)
    """
    from ..mugraph.model import kernel_shapes

    shapes = kernel_shapes(baseline)
    links = _UnionFind()
    for op in baseline.ops:
        row = LIBRARY_OPS[op.op]
        ins = [shapes[t] for t in op.inputs]
        out = shapes[op.outputs[0]]
        same, contracted = _edges(row.family, ins, out, {**row.attrs, **op.attrs})
        for i, d, dim in same:
            if ins[i][d] > 1 and out[dim] > 1:
                links.union((op.inputs[i], d), (op.outputs[0], dim))
        for i, d, j, e in contracted:
            links.union((op.inputs[i], d), (op.inputs[j], e))
    names: dict = {}
    labels = {}
    for tensor, shape in [*baseline.inputs.items(), *((t, shapes[t]) for op in baseline.ops
                                                      for t in op.outputs)]:
        row = []
        for dim, size in enumerate(shape):
            root = links.find((tensor, dim))
            row.append(names.setdefault(root, len(names)) if size > 1 else None)
        labels[tensor] = tuple(row)
    return labels


def op_labels(family: str, in_labels, shapes, out_shape, attrs, fresh: Label) -> Labels:
    """Forward rule: the labels of an op's output from its inputs' (no unification). Labels
    follow logical dims, so a tile dim the grid split down to size 1 keeps its label."""
    out: list = [None] * len(out_shape)
    same, _ = _edges(family, shapes, out_shape, attrs)
    for i, d, dim in same:
        if out[dim] is None:
            out[dim] = in_labels[i][d]
    if family == "accum" and out_shape[-1] > 1 and out[-1] is None:
        out[-1] = fresh  # todimx: a new dim of reduction_dimx partial sums
    return tuple(out)


# ---- schedules: grid labels, loop label, and the (grid, forloop_range) sizes ----------------

@dataclass(frozen=True)
class Schedule:
    """How a block graph tiles its inputs: grid axis a splits label grid_labels[a] (imaps
    follow), the loop walks loop_label (fmaps follow); sizes lists the valid (grid,
    forloop_range) assignments, and probe is the one the enumeration shapes tiles with."""

    grid_labels: tuple
    loop_label: Label | None
    imaps: tuple[tuple[int, int, int], ...]
    fmaps: tuple[int, ...]
    sizes: tuple[tuple[tuple[int, int, int], int], ...]

    @property
    def probe(self) -> tuple[tuple[int, int, int], int]:
        return self.sizes[len(self.sizes) // 2]

    def key(self) -> tuple:
        return (tuple(map(repr, self.grid_labels)), repr(self.loop_label), self.imaps,
                self.fmaps)


def divisors(n: int) -> list[int]:
    """Divisors of n in increasing order: divisors(12) == [1, 2, 3, 4, 6, 12]."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _dim_of(labels: Labels, label) -> int:
    return labels.index(label) if label in labels else NO_DIM


def label_sizes(shapes, labels) -> dict:
    """Size of every label among these tensors (None if two tensors disagree: unusable)."""
    sizes: dict = {}
    for shape, row in zip(shapes, labels):
        for size, label in zip(shape, row):
            if label is None:
                continue
            sizes[label] = size if sizes.get(label, size) == size else None
    return {label: size for label, size in sizes.items() if size}


def grid_sizes(label_size: list[int], gpu: GpuSpec, config: GeneratorConfig):
    """Grid assignments: a divisor (> 1) of each label's size, the block count in the window
    [min(SMs * min_blocks_per_sm, most / 4), max_blocks]."""
    choices = [[d for d in divisors(n) if d > 1] for n in label_size]
    most = min(math.prod(label_size), config.max_blocks)
    floor = max(1, min(int(gpu.sm_count * config.min_blocks_per_sm), most // 4))
    return [g for g in itertools.product(*choices) if floor <= math.prod(g) <= config.max_blocks]


def loop_ranges(remaining: int, config: GeneratorConfig) -> list[int]:
    """forloop_range choices: divisors of the dim the grid left, keeping a minimum tile."""
    tile_floor = min(config.min_loop_tile, remaining // 2)
    return [f for f in divisors(remaining)
            if 2 <= f <= config.max_forloop and remaining // f >= max(tile_floor, 1)]


def _input_tiles_fit(shapes, imaps, fmaps, grid, loop, gpu, dtype) -> bool:
    """The input tiles' slots alone fit in shared memory per block (mugraph.model's one rule,
    so a schedule dropped here could never validate; `dtype` plays no part: slots are fp32)."""
    tiles = []
    for shape, imap, fmap in zip(shapes, imaps, fmaps):
        tile = list(shape)
        for axis, dim in enumerate(imap):
            if dim != NO_DIM:
                tile[dim] //= grid[axis]
        if fmap != NO_DIM:
            tile[fmap] //= loop
        tiles.append(math.prod(tile))
    return smem_bytes_of(tiles) <= gpu.smem_per_block


def _spread(items: list, keep: int) -> list:
    """At most `keep` items, evenly spaced (keeps both ends)."""
    if len(items) <= keep:
        return items
    step = (len(items) - 1) / (keep - 1)
    return [items[round(i * step)] for i in range(keep)]


def schedules(shapes, labels, gpu: GpuSpec, config: GeneratorConfig = DEFAULT_CONFIG,
              dtype: str = "float16") -> list[Schedule]:
    """Every schedule of a block graph over inputs with these shapes and dim labels."""
    sizes = label_sizes(shapes, labels)
    order = sorted(sizes, key=repr)
    found = []
    for count in range(1, config.max_grid_dims + 1):
        for grid_labels in itertools.combinations(order, count):
            imaps = tuple(tuple(_dim_of(row, grid_labels[a]) if a < count else NO_DIM
                                for a in range(3)) for row in labels)
            grids = grid_sizes([sizes[label] for label in grid_labels], gpu, config)
            for loop_label in (None, *order):
                fmaps = tuple(_dim_of(row, loop_label) for row in labels)
                assignments = []
                for grid in grids:
                    grid3 = tuple(grid) + (1,) * (3 - count)
                    left = sizes.get(loop_label, 1)
                    if loop_label in grid_labels:
                        left //= grid[grid_labels.index(loop_label)]
                    for loop in loop_ranges(left, config) if loop_label is not None else [1]:
                        if _input_tiles_fit(shapes, imaps, fmaps, grid3, loop, gpu, dtype):
                            assignments.append((grid3, loop))
                if not assignments:
                    continue
                assignments.sort(key=lambda s: (math.prod(s[0]), s[0], s[1]))
                found.append(Schedule(grid_labels, loop_label, imaps, fmaps,
                                      tuple(_spread(assignments, config.max_sizes))))
    return found


def omaps(tile_labels: Labels, tile_shape, schedule: Schedule, concat: bool):
    """Output maps of a saved tile: a grid axis writes along the dim with its label; with
    `concat`, an axis whose label the tile lacks (a split reduction) may concatenate its
    partial results along any free dim, else the tile cannot be saved."""
    active = len(schedule.grid_labels)
    fixed, loose = [NO_DIM] * 3, []
    for axis, label in enumerate(schedule.grid_labels):
        dim = _dim_of(tile_labels, label)
        if dim == NO_DIM:
            loose.append(axis)
        else:
            fixed[axis] = dim
    if not loose:
        return [tuple(fixed)]
    if not concat:
        return []
    free = [d for d in range(len(tile_shape)) if d not in fixed[:active]]
    found = []
    for dims in itertools.permutations(free, len(loose)):
        omap = list(fixed)
        for axis, dim in zip(loose, dims):
            omap[axis] = dim
        found.append(tuple(omap))
    return found


def check_labels(shapes, labels) -> None:
    """Raise MuGraphError when labels and shapes disagree in rank (a caller bug)."""
    for shape, row in zip(shapes, labels):
        if len(shape) != len(row):
            raise MuGraphError(f"labels {row} do not fit shape {shape}")
