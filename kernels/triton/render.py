"""Render a µGraph to one Triton source file: a `@triton.jit` kernel per graph-defined kernel and
a host launcher `run(*inputs)` that runs library ops with torch.

Every kernel mirrors the µGraph interpreter (compiler/superopt/mugraph/interpreter.py): tile
offsets from the program ids through imap, a for-loop over `forloop_range` walking fmap, fp32
register accumulators (a running max rescales the sums that depend on it, online-softmax
style), after-loop ops, and stores through omap. Per-op emission rules are the tables in
rules.py; the templates in templates/ lay the lines out. Generated identifiers are our own (in0, t3,
kernel_0): no name from the model reaches the source.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from mlc.compiler.superopt.mugraph import (
    BLOCK_OPS,
    LIBRARY_OPS,
    NO_DIM,
    BlockGraph,
    MuGraph,
    MuGraphError,
    block_shapes,
    kernel_shapes,
)

from . import helpers
from .rules import (
    ACCUMULATORS,
    ELEMENTWISE,
    LIBRARY_EXPRS,
    LIBRARY_FLOAT_ATTRS,
    NEG_INF,
    RESCALING,
    TILE_OPS,
    AccumSite,
    OpSite,
    Tile,
    float_literal,
    keeps_zero_padding,
    registers,
)

LINE_WIDTH = 100
AXES = "xyz"
HELPERS = sorted(helpers.__all__)


# ---- one block graph -> one kernel -----------------------------------------------------------

def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.prod(shape[d + 1:]) for d in range(len(shape)))


def _offset(pointer: str, terms: list[tuple[str, int]]) -> str:
    parts = [pointer] + [var if coef == 1 else f"{var} * {coef}" for var, coef in terms if coef]
    return " + ".join(parts)


@dataclass
class KernelSource:
    """A rendered kernel, section by section (the template indents and joins them)."""

    name: str
    params: list[str]
    grid: tuple[int, int, int]
    forloop_range: int
    loop_var: str = "it"
    prologue: list[str] = field(default_factory=list)  # program ids, hoisted loads, inits
    loop: list[str] = field(default_factory=list)
    epilogue: list[str] = field(default_factory=list)  # finishes, after-loop ops, stores

    @property
    def loop_indent(self) -> int:
        return 8 if self.forloop_range > 1 else 4  # a single iteration needs no loop


def render_block(block: BlockGraph, source_shapes: list[tuple[int, ...]], name: str,
                 num_outputs: int) -> KernelSource:
    """Lines of one kernel; raise MuGraphError for what the renderer cannot express."""
    info = block_shapes(block, source_shapes)
    tiles: dict[str, Tile] = {}

    def tile(key: str, var: str, op: str, inputs=()) -> Tile:
        t = Tile.of(var, info.tiles[key], f"tile {key!r}")
        if op == "load" or keeps_zero_padding(op, list(inputs), t.dims):
            t = dataclasses.replace(t, zero_padded=True)
        tiles[key] = t
        return t

    kernel = KernelSource(name, [f"in{i}" for i in range(len(source_shapes))] +
                          [f"out{i}" for i in range(num_outputs)], block.grid,
                          block.forloop_range)
    inits, carry = [], []  # accumulator registers; end-of-iteration copies of running maxes
    for index, inp in enumerate(block.inputs):
        t = tile(inp.tile, f"t{index}", "load")
        shape = source_shapes[inp.source]
        strides = contiguous_strides(shape)
        terms = [(f"pid_{AXES[a]}", shape[d] // block.grid[a] * strides[d])
                 for a, d in enumerate(inp.imap) if block.grid[a] > 1 and d != NO_DIM]
        if inp.fmap != NO_DIM and block.forloop_range > 1:
            terms.append(("it", t.shape[inp.fmap] * strides[inp.fmap]))
        line = f"{t.var} = {_tile_call('load', _offset(f'in{inp.source}', terms), t, strides)}"
        (kernel.prologue if inp.fmap == NO_DIM else kernel.loop).append(line)

    in_loop = _needed_in_loop(block, info.phase)
    for index, op in enumerate(block.ops, start=len(block.inputs)):
        where = f"block op {op.op} -> {op.output!r}"
        row = BLOCK_OPS[op.op]
        ins = [tiles[t] for t in op.inputs]
        phase = info.phase[op.output]
        if row.family == "accum":
            rule = ACCUMULATORS.get(op.op)
            if rule is None:
                raise MuGraphError(f"{where}: the Triton renderer has no rule for this op")
            out = tile(op.output, f"t{index}", op.op, ins)
            acc = out.var if rule.finish is None else f"acc{index}"
            scale_by = ""
            if op.op in RESCALING:
                scale_by = _rescale_factor(ins[1], out, info.phase[op.inputs[1]], where, kernel,
                                           carry, inits)
            site = AccumSite(acc, ins[0], out, block.forloop_range, block.reduction_dimx,
                             scale_by)
            register = ins[0] if rule.shape_of_input else out
            inits.append(f"{acc} = {registers(rule.fill, register.pads)}")
            kernel.loop.append(f"{acc} = {rule.update(site)}")
            if rule.finish is not None:
                kernel.epilogue.append(f"{out.var} = {rule.finish(site)}")
            continue
        emit = TILE_OPS.get(op.op)
        if emit is None:
            raise MuGraphError(f"{where}: the Triton renderer has no rule for this op")
        out = tile(op.output, f"t{index}", op.op, ins)
        args = tuple(t.as_rank(out.rank) if row.family in ELEMENTWISE else t.var for t in ins)
        line = f"{out.var} = {emit(OpSite(args, tuple(ins), out, {**row.attrs, **op.attrs}))}"
        in_body = phase == "loop" or (phase == "both" and op.output in in_loop)
        if in_body:
            kernel.loop.append(line)
        if phase == "after" or (phase == "both" and not (in_body and block.forloop_range == 1)):
            kernel.epilogue.append(line)  # a running max's dependents, redone on the final max

    for index, out in enumerate(block.outputs):
        t = tiles[out.tile]
        shape = info.outputs[index]
        strides = contiguous_strides(shape)
        terms = [(f"pid_{AXES[a]}", t.shape[d] * strides[d])
                 for a, d in enumerate(out.omap) if block.grid[a] > 1]
        pointer = _offset(f"out{index}", terms)
        kernel.epilogue.append(_tile_call("store", pointer, t, strides, value=t.var))

    kernel.loop += carry
    body = "\n".join(kernel.prologue + kernel.loop + kernel.epilogue)
    pids = [f"pid_{a} = tl.program_id({n})" for n, a in enumerate(AXES)
            if re.search(rf"\bpid_{a}\b", body)]
    kernel.prologue = pids + kernel.prologue + inits
    if not re.search(r"\bit\b", "\n".join(kernel.loop)):
        kernel.loop_var = "_"  # the loop only re-adds loop-invariant tiles
    return kernel


def _needed_in_loop(block: BlockGraph, phase: dict[str, str]) -> set[str]:
    """Tiles some in-loop op or accumulator reads (a running max's dependents may not be)."""
    needed = set()
    for op in reversed(block.ops):
        if BLOCK_OPS[op.op].family == "accum" or phase[op.output] == "loop" or \
                op.output in needed:
            needed.update(op.inputs)
    return needed


def _tile_call(kind: str, pointer: str, t: Tile, strides: tuple[int, ...],
               value: str = "") -> str:
    """A load_tile_Nd / store_tile_Nd call: pointer, [value,] strides, sizes, padded sizes."""
    args = [pointer] + ([value] if value else [])
    args += [str(s) for s in strides[len(strides) - t.rank:]]
    args += [str(d) for d in t.dims] + [str(p) for p in t.pads]
    return f"{kind}_tile_{t.rank}d({', '.join(args)})"


def _rescale_factor(m: Tile, out: Tile, phase: str, where: str, kernel: KernelSource,
                    carry: list[str], inits: list[str]) -> str:
    """exp(m_prev - m) for a rescaling accumulator, computed once per iteration per running
    max (registering m_prev, its value one iteration back, the first time)."""
    if phase != "both":
        raise MuGraphError(f"{where}: rescales by {m.var}, which is not a running max (an "
                           "accum_max_ld output or an op on it)")
    if m.rank > out.rank or any(md not in (1, od) for md, od in
                                zip(m.dims[::-1], out.dims[::-1])):
        raise MuGraphError(f"{where}: a running max of shape {m.shape} cannot rescale an "
                           f"accumulator of shape {out.shape}")
    previous, factor = f"{m.var}_prev", f"{m.var}_scale"
    if f"{previous} = {m.var}" not in carry:
        inits.append(f"{previous} = {registers(NEG_INF, m.pads)}")
        kernel.loop.append(f"{factor} = tl.exp({previous} - {m.var})")
        carry.append(f"{previous} = {m.var}")
    return dataclasses.replace(m, var=factor).as_rank(out.rank)


# ---- the whole µGraph -> one module ----------------------------------------------------------

def wrap(line: str, width: int) -> str:
    """Break an over-long call at its top-level commas, aligning continuations after '('; an
    argument still too long is broken the same way inside."""
    if len(line) <= width or "(" not in line:
        return line
    start = line.index("(") + 1
    pieces, depth, begin = [], 0, start
    for pos in range(start, len(line)):
        char = line[pos]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(line[begin:pos + 1].strip())
            begin = pos + 1
    pieces.append(line[begin:].strip())
    groups, current = [], [pieces[0]]
    for piece in pieces[1:]:
        if start + len(" ".join(current + [piece])) > width:
            groups.append(current)
            current = [piece]
        else:
            current.append(piece)
    lines = []
    for number, group in enumerate(groups + [current]):
        prefix = line[:start] if number == 0 else " " * start
        text = " ".join(group)
        if len(prefix + text) > width and len(group) == 1:
            text = wrap(text, width - start).replace("\n", "\n" + " " * start)
        lines.append(prefix + text)
    return "\n".join(lines)


def _imports(used: list[str], has_kernels: bool, has_ops: bool) -> list[str]:
    lines = ["import torch"] if has_ops else []
    if has_kernels:
        lines += ["import triton", "import triton.language as tl"]
    if used:
        lines.append("")
        single = f"from mlc.kernels.triton.helpers import {', '.join(used)}"
        if len(single) <= LINE_WIDTH:
            lines.append(single)
        else:
            lines += ["from mlc.kernels.triton.helpers import ("]
            lines += [f"    {name}," for name in used] + [")"]
    return lines


def _library_line(op, var_of: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> str:
    template = LIBRARY_EXPRS.get(op.op)
    if template is None:
        raise MuGraphError(f"library op {op.op!r}: the Triton renderer has no rule for it")
    attrs = {**LIBRARY_OPS[op.op].attrs, **op.attrs}
    if "dim" in attrs:
        attrs["dim"] = attrs["dim"] % len(shapes[op.inputs[0]])
    for key in LIBRARY_FLOAT_ATTRS:
        if key in attrs:
            attrs[key] = float_literal(attrs[key])
    if callable(template):
        template = template(attrs)
    expr = template.format(*(var_of[t] for t in op.inputs), **attrs)
    return f"{var_of[op.outputs[0]]} = {expr}"


_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined, autoescape=False)


def render_triton(graph: MuGraph) -> str:
    """Python source of a module with one Triton kernel per graph-defined kernel and
    `run(*inputs) -> tuple` (torch tensors in the order of `graph.inputs`).

    >>> module = load_triton_module(render_triton(graph))    # doctest: +SKIP
    >>> (y,) = module.run(x, w)                                # doctest: +SKIP
    """
    shapes = kernel_shapes(graph)
    if not graph.inputs:
        raise MuGraphError("a µGraph without inputs has nothing to launch on")
    for tensor, shape in shapes.items():
        if len(shape) == 0:
            raise MuGraphError("the Triton renderer needs tensors of rank >= 1 (a scalar "
                               f"tensor is #{list(shapes).index(tensor)})")
    var_of = {name: f"in{i}" for i, name in enumerate(graph.inputs)}
    kernels, host = [], []
    if any(op.op == "block" for op in graph.ops):
        host = ["dtype, device = in0.dtype, in0.device"]
        host += [f"{v} = {v}.contiguous()" for v in var_of.values()]
    for index, op in enumerate(graph.ops):
        for t in op.outputs:
            var_of[t] = f"v{len(var_of) - len(graph.inputs)}"
        if op.op != "block":
            host.append(_library_line(op, var_of, shapes))
            continue
        name = f"kernel_{len(kernels)}"
        try:
            kernel = render_block(op.block, [shapes[t] for t in op.inputs], name,
                                  len(op.outputs))
        except MuGraphError as err:
            raise MuGraphError(f"kernel op #{index}: {err}") from None
        kernels.append(kernel)
        for t in op.outputs:
            host.append(f"{var_of[t]} = torch.empty({shapes[t]}, dtype=dtype, device=device)")
        args = [var_of[t] for t in op.inputs + op.outputs]
        host.append(f"{name}[{op.block.grid}]({', '.join(args)})")
    outputs = [var_of[t] for t in graph.outputs]
    host.append(f"return ({', '.join(outputs)}{',' if len(outputs) == 1 else ''})")

    for kernel in kernels:
        kernel.prologue = [wrap(line, LINE_WIDTH - 4) for line in kernel.prologue]
        kernel.loop = [wrap(line, LINE_WIDTH - kernel.loop_indent) for line in kernel.loop]
        kernel.epilogue = [wrap(line, LINE_WIDTH - 4) for line in kernel.epilogue]
    host = [wrap(line, LINE_WIDTH - 4) for line in host]
    body = "\n".join(line for k in kernels for line in k.prologue + k.loop + k.epilogue)
    used = [h for h in HELPERS if re.search(rf"\b{h}\(", body)]
    library = sum(op.op != "block" for op in graph.ops)
    return _environment.get_template("module.py.j2").render(
        imports=_imports(used, bool(kernels), bool(graph.ops)), kernels=kernels, host=host,
        params=", ".join(f"in{i}" for i in range(len(graph.inputs))),
        num_kernels=len(kernels), num_library=library,
        outputs=len(graph.outputs))
