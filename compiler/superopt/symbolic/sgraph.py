"""The sGraph (Prism §3): a µGraph whose operator types and topology are concrete but whose
grid sizes, for-loop ranges and tensor dims are symbolic, plus one constraint list.

An SGraph keeps its program at the generic point of dims.py (`generic`): every tile dim there
is the exact image of its monomial, so shapes, terms and maps computed on it are the symbolic
ones. Per graph-defined kernel it records which variables it has (gDk for a grid axis that
splits dim Dk, f for the loop), which dim labels they split (the schedule), and the
constraints any instantiation must meet:

- divides(v, e): variable v splits symbolic dim e exactly (a grid axis splits its label, the
  loop splits what the grid left);
- blocks(gDi*gDj...): the block count lies in the GPU's window (a quarter of the SMs, at most
  max_blocks);
- smem(tile + ...): the block's slots fit in shared memory (mugraph.model's one rule: every
  slot fp32 and aligned, as the CUDA renderer lays them out).

The constraints are collected as the program's parts are added (sgraph_from_program walks the
loaders, the grid, then the tiles in op order) and evaluated by `violation` for a binding of
data symbols and variables. None can be decided without sizes: every one holds for small
enough tiles, so the search keeps them all and instantiation filters by them.

    >>> sgraph.describe()  # rms_norm(X) @ W, X (D0, D1), W (D1, D2)
    'block[gD2 f=D1: accum_rms_ld matmul accum_sum div]'
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..cost.hardware import GpuSpec
from ..mugraph.model import (
    NO_DIM,
    KernelOp,
    MuGraph,
    block_shapes,
    kernel_shapes,
    smem_bytes_of,
    smem_slots,
)
from ..mugraph.serialize import mugraph_from_json, mugraph_to_json
from ..search.generators import DEFAULT_CONFIG, GeneratorConfig
from .dims import (
    LOOP_VAR,
    Dim,
    SymbolicError,
    decode,
    encode,
    prime_variable,
    symbol,
    symbol_index,
    variable_prime,
)


@dataclass(frozen=True)
class Divides:
    variable: str
    dim: Dim

    def __str__(self) -> str:
        return f"{self.variable} | {self.dim}"


@dataclass(frozen=True)
class BlockCount:
    variables: tuple[str, ...]
    extent: Dim  # product of the split dims: the most blocks the grid could have

    def __str__(self) -> str:
        return f"blocks({'*'.join(self.variables)}) in window"


@dataclass(frozen=True)
class SharedMemory:
    tiles: tuple[Dim, ...]  # elements of each slot of mugraph.model.smem_slots

    def __str__(self) -> str:
        return "smem(" + " + ".join(str(d) for d in self.tiles) + ")"


Constraint = Divides | BlockCount | SharedMemory


def violation(constraint: Constraint, sizes: dict, variables: dict, gpu: GpuSpec,
              config: GeneratorConfig = DEFAULT_CONFIG) -> str | None:
    """Why `constraint` fails under this binding (None if it holds)."""
    if isinstance(constraint, Divides):
        value = variables.get(constraint.variable, 1)
        whole = constraint.dim.evaluate(sizes, variables)
        return None if whole % value == 0 else f"{constraint} fails: {value} ∤ {whole}"
    if isinstance(constraint, BlockCount):
        blocks = math.prod(variables.get(v, 1) for v in constraint.variables)
        most = min(constraint.extent.evaluate(sizes, {}), config.max_blocks)
        floor = max(1, min(int(gpu.sm_count * config.min_blocks_per_sm), most // 4))
        if floor <= blocks <= config.max_blocks:
            return None
        return f"{blocks} blocks outside [{floor}, {config.max_blocks}]"
    need = smem_bytes_of(dim.evaluate(sizes, variables) for dim in constraint.tiles)
    if need <= gpu.smem_per_block:
        return None
    return f"needs {need:,} bytes of shared memory, the target allows {gpu.smem_per_block:,}"


@dataclass(frozen=True)
class SymKernel:
    """One kernel op of an sGraph: its variables, what they split, and its constraints."""

    variables: tuple[str, ...]  # active ones, in axis order, then f
    grid_labels: tuple  # dim label per active grid axis
    loop_label: object  # dim label the loop walks (None: no loop)
    constraints: tuple[Constraint, ...]


@dataclass(frozen=True)
class SGraph:
    """A symbolic µGraph: `generic` at the generic point, one SymKernel per kernel op (None for
    library ops), and the data symbol of every input dim (None: a size-1 dim)."""

    generic: MuGraph
    kernels: tuple[SymKernel | None, ...]
    symbols: dict[str, tuple]

    def describe(self) -> str:
        """One line: each kernel as its op, or block[its variables, f=the dim the loop walks:
        tile ops]."""
        parts = []
        for op, kernel in zip(self.generic.ops, self.kernels):
            if kernel is None:
                parts.append(op.op)
                continue
            splits = " ".join(v if v != LOOP_VAR else f"f={_label_name(kernel.loop_label)}"
                              for v in kernel.variables)
            parts.append(f"block[{splits}: {' '.join(o.op for o in op.block.ops)}]")
        return "; ".join(parts)

    def constraints(self) -> list[str]:
        """Every kernel's constraints as text, prefixed by the kernel's index."""
        return [f"k{index}: {c}" for index, kernel in enumerate(self.kernels) if kernel
                for c in kernel.constraints]


def _label_name(label) -> str:
    return f"D{label}" if isinstance(label, int) else repr(label)


def kernel_variables(op: KernelOp) -> tuple[str, ...]:
    """The variables a generic block kernel uses: one per split grid axis (gDk, the blocks
    along the dim it splits), then f if its loop runs."""
    block = op.block
    names = [prime_variable(g) for g in block.grid if g != 1]
    if block.forloop_range != 1:
        names.append(prime_variable(block.forloop_range))
    return tuple(names)


def _constraints(op: KernelOp, source_shapes) -> tuple[Constraint, ...]:
    """Constraints of one generic block kernel, in the order its parts are added: the input
    loaders (exact divisions), the grid (block count), then every tile (shared memory)."""
    block = op.block
    found: list[Constraint] = []
    grid_vars = tuple(prime_variable(g) for g in block.grid if g > 1)
    for inp, shape in zip(block.inputs, source_shapes):
        left = [decode(size) for size in shape]
        for axis, dim in enumerate(inp.imap):
            if dim != NO_DIM and block.grid[axis] > 1:
                variable = prime_variable(block.grid[axis])
                found.append(Divides(variable, left[dim]))
                left[dim] = dataclasses.replace(left[dim], over=left[dim].over + (variable,))
        if inp.fmap != NO_DIM and block.forloop_range > 1:
            found.append(Divides(LOOP_VAR, left[inp.fmap]))
    if grid_vars:
        extent = Dim(tuple(f"D{v[2:]}" for v in grid_vars))
        found.append(BlockCount(grid_vars, extent))
    info = block_shapes(block, source_shapes)
    found.append(SharedMemory(tuple(decode(math.prod(slot.shape))
                                    for slot in smem_slots(block, info.tiles))))
    return tuple(dict.fromkeys(found))


def sgraph_from_program(ops, schedules, generic_inputs: dict, outputs, symbols: dict,
                        name: str, dtype: str = "float16") -> SGraph:
    """An sGraph from a complete program found at the generic point (search.enumerate's
    Program parts), its constraints collected kernel by kernel."""
    graph = MuGraph(name, dict(generic_inputs), tuple(ops), tuple(outputs), dtype)
    shapes = kernel_shapes(graph)
    kernels = []
    for op, schedule in zip(ops, schedules):
        if op.block is None:
            kernels.append(None)
            continue
        constraints = _constraints(op, [shapes[t] for t in op.inputs])
        kernels.append(SymKernel(kernel_variables(op), tuple(schedule.grid_labels),
                                 schedule.loop_label, constraints))
    return SGraph(graph, tuple(kernels), dict(symbols))


# ---- instantiation -----------------------------------------------------------------------

def instantiate(sgraph: SGraph, sizes: dict[str, int],
                assignments: list[dict[str, int] | None], name: str | None = None) -> MuGraph:
    """The concrete µGraph for data sizes `sizes` (symbol -> int) and one variable assignment
    per kernel (None for library ops). Shapes are not validated here (kernel_shapes does)."""
    generic = sgraph.generic
    inputs = {tensor: tuple(1 if s is None else sizes[s] for s in row)
              for tensor, row in sgraph.symbols.items()}
    ops = []
    for op, assignment in zip(generic.ops, assignments):
        if op.block is None:
            ops.append(op)
            continue
        block = op.block
        grid = tuple(assignment.get(prime_variable(g), 1) if g != 1 else 1
                     for g in block.grid)
        loop = assignment.get(LOOP_VAR, 1) if block.forloop_range != 1 else 1
        dimx = block.reduction_dimx
        if any(o.op == "accum_sum_todimx" for o in block.ops):
            dimx = decode(dimx).evaluate(sizes, {})
        ops.append(dataclasses.replace(op, block=dataclasses.replace(
            block, grid=grid, forloop_range=loop, reduction_dimx=dimx)))
    return MuGraph(name or generic.name, inputs, tuple(ops), generic.outputs, generic.dtype)


# ---- JSON ----------------------------------------------------------------------------------

def _symbolic_value(value: int):
    """A generic size as its monomial's text; a variable prime as its name; 1 stays 1."""
    return 1 if value == 1 else str(decode(value))


def parse_dim(text) -> Dim:
    """Inverse of str(Dim): 'D1', 'D0*D2', 'D1/gD1', 'D1/(gD1*f)', or 1; SymbolicError for
    anything else."""
    if _is_one(text) or text == "1":
        return Dim()
    if not isinstance(text, str) or len(text) > 200:
        raise SymbolicError(f"{text!r} is not a symbolic size (like D1 or D1/(gD1*f))")
    top, _, bottom = text.partition("/")
    symbols = tuple(s for s in top.split("*") if s != "1")
    over = tuple(v for v in bottom.strip("()").split("*") if v)
    for name in symbols:
        symbol_index(name)  # checks the name
    for name in over:
        variable_prime(name)
    return Dim(symbols, over)


def _is_one(value) -> bool:
    """The JSON integer 1 (not true, not 1.0)."""
    return isinstance(value, int) and not isinstance(value, bool) and value == 1


def _variable(value, allowed=None) -> int:
    """A symbolic grid or loop size from JSON: 1 or a variable's name, as its generic value."""
    if _is_one(value):
        return 1
    if allowed is not None and value != allowed:
        raise SymbolicError(f"{value!r} is not 1 or {allowed!r}")
    return variable_prime(value)


def sgraph_to_json(sgraph: SGraph) -> dict:
    """The sGraph with symbolic sizes spelled out (grid "g0", loop "f", dims "D1")."""
    doc = mugraph_to_json(sgraph.generic)
    doc["kind"] = "sgraph"
    for entry in doc["inputs"]:
        entry["shape"] = [_symbolic_value(v) for v in entry["shape"]]
    for kernel, sym in zip(doc["kernels"], sgraph.kernels):
        if sym is None:
            continue
        block = kernel["block"]
        block["grid"] = [1 if g == 1 else prime_variable(g) for g in block["grid"]]
        block["forloop_range"] = 1 if block["forloop_range"] == 1 else LOOP_VAR
        if any(o["op"] == "accum_sum_todimx" for o in block["ops"]):
            block["reduction_dimx"] = _symbolic_value(block["reduction_dimx"])
        kernel["schedule"] = {"grid_labels": list(sym.grid_labels),
                              "loop_label": sym.loop_label}
        kernel["constraints"] = [str(c) for c in sym.constraints]
    return doc


@dataclass(frozen=True)
class _Schedule:
    """What sgraph_from_program reads of a schedule: the labels its variables split."""

    grid_labels: tuple
    loop_label: object


def _expect(value, kind: type, where: str):
    if not isinstance(value, kind):
        raise SymbolicError(f"{where}: expected {'an object' if kind is dict else 'a list'}")
    return value


def _generic_input(doc, where: str) -> dict:
    """An sGraph input with its symbolic shape at the generic point."""
    _expect(doc, dict, where)
    shape = _expect(doc.get("shape"), list, f"{where}.shape")
    return {**doc, "shape": [encode(parse_dim(v)) for v in shape]}


def _schedule(doc, where: str) -> _Schedule:
    """A kernel's schedule: the data dim labels (ints) its grid axes and its loop split."""
    _expect(doc, dict, f"{where}.schedule")
    labels = _expect(doc.get("grid_labels"), list, f"{where}.schedule.grid_labels")
    loop = doc.get("loop_label")
    for label in [*labels, *([] if loop is None else [loop])]:
        if isinstance(label, bool) or not isinstance(label, int):
            raise SymbolicError(f"{where}.schedule: label {label!r} is not a data dim index")
        symbol(label)  # in range
    return _Schedule(tuple(labels), loop)


def sgraph_from_json(doc: dict) -> SGraph:
    """Inverse of sgraph_to_json (constraints are recomputed from the program)."""
    _expect(doc, dict, "sGraph")
    _expect(doc.get("inputs"), list, "sGraph inputs")
    _expect(doc.get("kernels"), list, "sGraph kernels")
    generic_doc = {k: v for k, v in doc.items() if k != "kind"}
    generic_doc["kind"] = "mugraph"
    generic_doc["inputs"] = [_generic_input(i, f"inputs[{n}]")
                             for n, i in enumerate(doc["inputs"])]
    kernels_doc, schedules = [], []
    for n, kernel in enumerate(doc["kernels"]):
        kernel = dict(_expect(kernel, dict, f"kernels[{n}]"))
        schedule = kernel.pop("schedule", None)
        kernel.pop("constraints", None)
        if kernel.get("op") == "block":
            block = dict(_expect(kernel.get("block"), dict, f"kernels[{n}].block"))
            block["grid"] = [_variable(g) for g in
                             _expect(block.get("grid"), list, f"kernels[{n}].block.grid")]
            block["forloop_range"] = _variable(block.get("forloop_range"), LOOP_VAR)
            if isinstance(block.get("reduction_dimx"), str):
                block["reduction_dimx"] = encode(parse_dim(block["reduction_dimx"]))
            kernel["block"] = block
        kernels_doc.append(kernel)
        schedules.append(None if schedule is None else _schedule(schedule, f"kernels[{n}]"))
    generic_doc["kernels"] = kernels_doc
    generic = mugraph_from_json(generic_doc)
    symbols = {i["name"]: tuple(None if _is_one(v) else v for v in i["shape"])
               for i in doc["inputs"]}
    return sgraph_from_program(generic.ops, schedules, generic.inputs, generic.outputs,
                               symbols, generic.name, generic.dtype)

