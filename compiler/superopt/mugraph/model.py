"""The µGraph: a kernel graph of library ops and graph-defined kernels, each of the latter holding
a block graph (grid, for-loop, tile ops, accumulators, output savers).

Tile shapes follow Mirage's rules: an input's tile divides `dim[imap[a]]` by `grid[a]` for each
grid axis a, then `dim[fmap]` by `forloop_range`. Ops with an accumulator among their inputs'
ancestors run once after the loop; the rest run every iteration. Objects are immutable; build
them directly or from JSON (serialize.py), then `validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .ops import BLOCK_OPS, LIBRARY_OPS, RUNNING_ACCUMS, MuGraphError

NO_DIM = -1  # imap/omap entry: replicate (input) or "grid axis unused" (output); fmap: no loop


@dataclass(frozen=True)
class BlockInput:
    """Iterator: loads a tile of kernel input number `source` each loop iteration."""

    tile: str
    source: int
    imap: tuple[int, int, int]
    fmap: int = NO_DIM


@dataclass(frozen=True)
class BlockOp:
    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BlockOutput:
    """Saver: writes an after-loop tile; grid axis a concatenates blocks along dim omap[a]."""

    tile: str
    omap: tuple[int, int, int]


@dataclass(frozen=True)
class BlockGraph:
    grid: tuple[int, int, int]
    forloop_range: int
    inputs: tuple[BlockInput, ...]
    ops: tuple[BlockOp, ...]
    outputs: tuple[BlockOutput, ...]
    reduction_dimx: int = 64
    threads: int = 128

    @property
    def num_blocks(self) -> int:
        return math.prod(self.grid)


@dataclass(frozen=True)
class KernelOp:
    """A library op (an IR op name from LIBRARY_OPS) or a graph-defined kernel (op="block")."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    block: BlockGraph | None = None
    name: str = ""


@dataclass(frozen=True)
class MuGraph:
    name: str
    inputs: dict[str, tuple[int, ...]]
    ops: tuple[KernelOp, ...]
    outputs: tuple[str, ...]
    dtype: str = "float16"  # element type of the generated kernels (cost, shared memory)


# ---- shape rules ---------------------------------------------------------------------------

def input_tile_shape(shape: tuple[int, ...], grid, imap, fmap, forloop_range) -> tuple:
    """The tile one block sees in one iteration (Mirage's input-loader rule)."""
    tile = list(shape)
    used = set()
    for axis, dim in enumerate(imap):
        # checked on unsplit axes too: the renderers read every entry
        if dim != NO_DIM and not 0 <= dim < len(shape):
            raise MuGraphError(f"imap axis {'xyz'[axis]} -> dim {dim} of a rank-"
                               f"{len(shape)} tensor")
        if grid[axis] > 1 and dim != NO_DIM:
            if dim in used:
                raise MuGraphError(f"imap maps two grid axes to dim {dim}")
            used.add(dim)
            if tile[dim] % grid[axis]:
                raise MuGraphError(f"dim {dim} of size {tile[dim]} does not split into "
                                   f"{grid[axis]} blocks (grid {'xyz'[axis]})")
            tile[dim] //= grid[axis]
    if fmap != NO_DIM:
        if not 0 <= fmap < len(shape):
            raise MuGraphError(f"fmap {fmap} is not a dim of a rank-{len(shape)} tensor")
        if tile[fmap] % forloop_range:
            raise MuGraphError(f"dim {fmap} tile of size {tile[fmap]} does not split into "
                               f"forloop_range {forloop_range}")
        tile[fmap] //= forloop_range
    return tuple(tile)


def output_shape(tile: tuple[int, ...], grid, omap) -> tuple[int, ...]:
    shape = list(tile)
    used = set()
    for axis, dim in enumerate(omap):
        if dim != NO_DIM and not 0 <= dim < len(shape):
            raise MuGraphError(f"omap axis {'xyz'[axis]} -> dim {dim} of a rank-{len(shape)} "
                               "tile")
        if grid[axis] == 1:
            continue
        if dim == NO_DIM or not 0 <= dim < len(shape) or dim in used:
            raise MuGraphError(f"omap {tuple(omap)}: grid axis {'xyz'[axis]} has "
                               f"{grid[axis]} blocks and needs its own output dim")
        used.add(dim)
        shape[dim] *= grid[axis]
    return tuple(shape)


@dataclass(frozen=True)
class BlockShapes:
    """Tile shapes of a block graph, which tiles live after the loop, and output shapes."""

    tiles: dict[str, tuple[int, ...]]
    phase: dict[str, str]  # "loop", "after", or "both" (a running max: seen in and after)
    outputs: tuple[tuple[int, ...], ...]

    @property
    def after_loop(self) -> frozenset:
        return frozenset(t for t, p in self.phase.items() if p != "loop")


def block_shapes(block: BlockGraph, source_shapes: list[tuple[int, ...]]) -> BlockShapes:
    """Infer every tile's shape and phase; raise MuGraphError naming the offending op."""
    if len(block.grid) != 3 or any(g < 1 for g in block.grid) or block.forloop_range < 1:
        raise MuGraphError(f"grid {block.grid} and forloop_range {block.forloop_range} must be "
                           "three positive sizes and a positive count")
    tiles: dict[str, tuple[int, ...]] = {}
    phase: dict[str, str] = {}  # "loop" (every iteration), "after" (once), "both" (running max)
    for inp in block.inputs:
        if not 0 <= inp.source < len(source_shapes):
            raise MuGraphError(f"block input {inp.tile!r} reads kernel input #{inp.source}, "
                               f"but the kernel has {len(source_shapes)}")
        try:
            tiles[inp.tile] = input_tile_shape(source_shapes[inp.source], block.grid, inp.imap,
                                               inp.fmap, block.forloop_range)
        except MuGraphError as err:
            raise MuGraphError(f"block input {inp.tile!r}: {err}") from None
        if inp.tile in phase:
            raise MuGraphError(f"block input tile {inp.tile!r} is defined twice")
        phase[inp.tile] = "loop"
    for op in block.ops:
        where = f"block op {op.op} -> {op.output!r}"
        row = BLOCK_OPS.get(op.op)
        if row is None:
            raise MuGraphError(f"{where}: unknown tile op (known: {', '.join(BLOCK_OPS)})")
        if len(op.inputs) != row.arity:
            raise MuGraphError(f"{where}: takes {row.arity} inputs, got {len(op.inputs)}")
        missing = [t for t in op.inputs if t not in tiles]
        if missing:
            raise MuGraphError(f"{where}: reads undefined tile(s) {missing}")
        if op.output in tiles:
            raise MuGraphError(f"{where}: tile {op.output!r} is defined twice")
        attrs = {**row.attrs, **op.attrs}
        if op.op == "accum_sum_todimx":
            attrs["reduction_dimx"] = block.reduction_dimx
        try:
            tiles[op.output] = row.shape([tiles[t] for t in op.inputs], attrs)
        except MuGraphError as err:
            raise MuGraphError(f"{where}: {err}") from None
        phase[op.output] = _phase_of(op, row.family, [phase[t] for t in op.inputs], where)
    outputs = []
    for out in block.outputs:
        if out.tile not in tiles:
            raise MuGraphError(f"block output saves undefined tile {out.tile!r}")
        if phase[out.tile] == "loop":
            raise MuGraphError(f"block output {out.tile!r} is saved without passing an "
                               "accumulator (every input-to-output path needs one)")
        try:
            outputs.append(output_shape(tiles[out.tile], block.grid, out.omap))
        except MuGraphError as err:
            raise MuGraphError(f"block output {out.tile!r}: {err}") from None
    saved = {o.tile for o in block.outputs}
    consumed = {t for op in block.ops for t in op.inputs}
    dead = [t for t in tiles if t not in consumed and t not in saved]
    if dead:
        raise MuGraphError(f"tile(s) {dead} are computed but never used or saved")
    return BlockShapes(tiles, phase, tuple(outputs))


def _phase_of(op: BlockOp, family: str, input_phases: list[str], where: str) -> str:
    """When a tile is computed: in the loop, after it, or both (a running max)."""
    if family == "accum":
        if input_phases[0] != "loop":
            raise MuGraphError(f"{where}: accumulates a tile that is already after the loop "
                               "(a path may pass only one accumulator)")
        if op.op in ("accum_sum_rescale", "accum_sum_ld_rescale") and input_phases[1] != "both":
            raise MuGraphError(f"{where}: rescales by a tile that is not a running max (an "
                               "accum_max_ld output, or ops on it only)")
        return "both" if op.op in RUNNING_ACCUMS else "after"
    if "loop" in input_phases and "after" in input_phases:
        raise MuGraphError(f"{where}: mixes in-loop and after-loop tiles")
    if "loop" in input_phases:
        return "loop"
    return "after" if "after" in input_phases else "both"


DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
# The one shared-memory rule (validation, the generators, instantiation, the cost model and the
# CUDA renderer's layout all call it): the renderers keep every tile, whatever the graph's
# dtype, in fp32, each in its own slot starting on a 16-byte boundary.
SMEM_DTYPE = "float32"
SMEM_ALIGN = 4  # elements of SMEM_DTYPE: 16 bytes


@dataclass(frozen=True)
class SmemSlot:
    """One shared-memory slot of a block: a tile (kind "input" or the op that computes it) or
    the per-row rescale factors exp(m_old - m_new) kept beside a running max (kind
    "rescale", same shape as the running max)."""

    tile: str
    shape: tuple[int, ...]
    kind: str


def smem_slots(block: BlockGraph, tiles: dict) -> list[SmemSlot]:
    """The block's shared-memory slots in layout order: the input tiles, then every op's
    output (a running max followed by its rescale factors). `tiles` maps tile -> shape."""
    slots = [SmemSlot(inp.tile, tuple(tiles[inp.tile]), "input") for inp in block.inputs]
    for op in block.ops:
        slots.append(SmemSlot(op.output, tuple(tiles[op.output]), op.op))
        if op.op == "accum_max_ld":
            slots.append(SmemSlot(op.output, tuple(tiles[op.output]), "rescale"))
    return slots


def smem_slot_elements(elements: int) -> int:
    """Elements a slot of `elements` occupies: rounded up to the 16-byte alignment."""
    return -(-elements // SMEM_ALIGN) * SMEM_ALIGN


def smem_bytes_of(tile_elements) -> int:
    """Bytes of shared memory for slots of these element counts (the rule's arithmetic, also
    used by symbolic constraints that evaluate each slot's size per binding)."""
    return sum(smem_slot_elements(n) for n in tile_elements) * DTYPE_BYTES[SMEM_DTYPE]


def shared_memory_bytes(block: BlockGraph, source_shapes) -> int:
    """Shared memory one block needs, exactly as the CUDA renderer lays it out (every slot of
    `smem_slots`, fp32, aligned). Thread-level chains (thread.py) run in registers in the
    Triton kernels, but the CUDA kernels still give their tiles a slot, so they count."""
    info = block_shapes(block, source_shapes)
    return smem_bytes_of(math.prod(slot.shape) for slot in smem_slots(block, info.tiles))


def validate(graph: MuGraph, smem_limit_bytes: int | None = None) -> dict[str, tuple[int, ...]]:
    """All structural rules plus each block's shared memory against the target's limit.

    Returns the kernel-level shapes. smem_limit_bytes defaults to no check (a target's limit
    comes from specs/hardware, e.g. 227 KiB per block on H100).
    """
    shapes = kernel_shapes(graph)
    if smem_limit_bytes is None:
        return shapes
    for index, op in enumerate(graph.ops):
        if op.op != "block":
            continue
        need = shared_memory_bytes(op.block, [shapes[t] for t in op.inputs])
        if need > smem_limit_bytes:
            raise MuGraphError(f"kernel op #{index} ({op.name or 'block'}): needs {need:,} bytes "
                               f"of shared memory, the target allows {smem_limit_bytes:,}; use "
                               "a larger grid or forloop_range")
    return shapes


def kernel_shapes(graph: MuGraph) -> dict[str, tuple[int, ...]]:
    """Shapes of every kernel-level tensor; validates each op on the way."""
    shapes = dict(graph.inputs)
    for index, op in enumerate(graph.ops):
        where = f"kernel op #{index} ({op.name or op.op})"
        missing = [t for t in op.inputs if t not in shapes]
        if missing:
            raise MuGraphError(f"{where}: reads {missing} before they are defined (a cycle, or "
                               "ops out of order)")
        ins = [shapes[t] for t in op.inputs]
        if op.op == "block":
            if op.block is None:
                raise MuGraphError(f"{where}: a graph-defined kernel needs a block graph")
            try:
                outs = block_shapes(op.block, ins).outputs
            except MuGraphError as err:
                raise MuGraphError(f"{where}: {err}") from None
        else:
            row = LIBRARY_OPS.get(op.op)
            if row is None:
                raise MuGraphError(f"{where}: unknown library op {op.op!r} (known: "
                                   f"{', '.join(LIBRARY_OPS)}, block)")
            if len(ins) != row.arity:
                raise MuGraphError(f"{where}: takes {row.arity} inputs, got {len(ins)}")
            try:
                outs = (row.shape(ins, {**row.attrs, **op.attrs}),)
            except MuGraphError as err:
                raise MuGraphError(f"{where}: {err}") from None
        if len(outs) != len(op.outputs):
            raise MuGraphError(f"{where}: produces {len(outs)} tensors, names {len(op.outputs)}")
        for name, shape in zip(op.outputs, outs):
            if name in shapes:
                raise MuGraphError(f"{where}: tensor {name!r} is defined twice")
            shapes[name] = shape
    for name in graph.outputs:
        if name not in shapes:
            raise MuGraphError(f"µGraph output {name!r} is never produced")
    return shapes
