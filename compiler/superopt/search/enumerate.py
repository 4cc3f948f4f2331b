"""Depth-first enumeration of µGraphs (Mirage §4.2), pruned by abstract expressions.

Kernel level: add a library op over existing tensors, or open a graph-defined kernel (block
inputs, schedule) and go to block level. Block level: add a tile op over existing tiles, or
close the block graph (every unconsumed tile is saved; omaps follow the schedule). Tiles take
the shapes of the schedule's probe sizes; tune.py re-sizes complete programs afterwards.

Canonical order: each op gets a key (largest input index, input indices, op rank, attrs); a
new op's key must exceed the previous op's. An op's key depends only on tensors that exist
before it, so of the topological orders of one graph at most one has increasing keys; and the
order that always takes the smallest available key has increasing keys (an op made available
by the last op reads its output, the largest index so far). So every graph is enumerated once.

Pruning: a new tile or tensor survives only if space.allows(its term); a complete program's
outputs must be space.equivalent to the targets, with the targets' shapes.
"""

from __future__ import annotations

import itertools
import time

from mlc.compiler.ir import Graph

from ..mugraph.model import (
    NO_DIM,
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    KernelOp,
    input_tile_shape,
    kernel_shapes,
    output_shape,
)
from ..mugraph.ops import BLOCK_OPS, LIBRARY_OPS, MuGraphError
from ..prune.terms import library_term, tile_term, var
from ..verify.lowering import lower_to_mugraph
from .generators import (
    DEFAULT_CONFIG,
    SCALAR_TILE_OPS,
    GeneratorConfig,
    Schedule,
    constant_choices,
    constant_uses,
    dim_labels,
    library_ops_for,
    omaps,
    op_labels,
    schedules,
    tile_ops_for,
)
from .state import (
    Counts,
    OpenBlock,
    OutOfTime,
    Program,
    Tensor,
    Tile,
    attr_choices,
    graph_reads,
    input_tuples,
    phase_of,
)

__all__ = ["Counts", "Enumerator", "OutOfTime", "Program", "Tensor"]

COMMUTATIVE = {"add", "mul", "Add", "Mul"}
LIBRARY_OPS_RANK = {op: rank for rank, op in enumerate(LIBRARY_OPS)}
BLOCK_OPS_RANK = {op: rank for rank, op in enumerate(BLOCK_OPS)}
BLOCK_RANK = len(LIBRARY_OPS)  # a graph-defined kernel sorts after every library op


class Enumerator:
    """Enumerates the µGraphs of `reference` (see the module doc). Call `run`."""

    def __init__(self, reference: Graph, gpu, space, *, max_kernel_ops: int, max_block_ops: int,
                 prune: bool = True, config: GeneratorConfig = DEFAULT_CONFIG,
                 deadline: float | None = None):
        self.reference = reference
        self.gpu = gpu
        self.space = space
        self.prune = prune
        self.config = config
        self.max_kernel_ops = max_kernel_ops
        self.max_block_ops = max_block_ops
        self.deadline = deadline
        self.counts = Counts()
        self.tile_ops = tile_ops_for(reference)
        self.library_ops = library_ops_for(reference)
        self.constants = constant_choices(reference)
        self.constant_uses = constant_uses(reference)
        self.targets = [tuple(reference.types[name].shape) for name in reference.outputs]
        baseline = lower_to_mugraph(reference)
        self.labels = labels = dim_labels(baseline)
        # a grid axis of the last kernel must write along a dim of an output
        self.output_labels = {label for name in reference.outputs for label in labels[name]}
        self.inputs = [Tensor(name, tuple(t.shape), labels[name], var(name), frozenset([name]))
                       for name, t in reference.inputs.items()]
        self.target_reads = graph_reads(reference)
        shapes = kernel_shapes(baseline)
        self.label_size = {label: shapes[name][dim] for name, row in labels.items()
                           for dim, label in enumerate(row) if label is not None}
        self._schedules: dict = {}
        self._shapes: dict = {}  # (op, attrs, input shapes) -> output shape or None
        self._terms: dict = {}  # (op, attrs, shapes, loop, input term ids) -> (term, ok, ins)

    # ---- bookkeeping -----------------------------------------------------------------------
    def _tick(self) -> None:
        self.counts.visited += 1
        if self.deadline is not None and self.counts.visited % 64 == 0 \
                and time.monotonic() > self.deadline:
            raise OutOfTime

    def _allowed(self, term) -> bool:
        if not self.prune or self.space.allows(term):
            return True
        self.counts.pruned += 1
        return False

    def _known(self, term, tensors) -> bool:
        """Does an existing tensor already hold this value? (Then computing it is waste.)"""
        class_id = getattr(self.space, "class_id", None)
        if class_id is None:
            return any(t.term == term for t in tensors)
        wanted = class_id(term)
        return wanted >= 0 and any(class_id(t.term) == wanted for t in tensors)

    def _target_of(self, tensor_shape, term) -> int | None:
        for index, shape in enumerate(self.targets):
            if shape == tensor_shape and self.space.equivalent(term, index):
                return index
        return None

    # ---- kernel level ----------------------------------------------------------------------
    def top_choices(self) -> list[tuple]:
        """The first kernel op's choices, the unit the driver splits among workers."""
        return list(self._kernel_choices(self.inputs, (), 0))

    def _kernel_choices(self, tensors, last_key, newest_from):
        for op in self.library_ops:
            rank = LIBRARY_OPS_RANK[op]
            row = LIBRARY_OPS[op]
            for inputs in input_tuples(row.arity, len(tensors), newest_from, op in COMMUTATIVE):
                shapes = [tensors[i].shape for i in inputs]
                for attrs in self._constant_attrs(row, attr_choices(row, shapes)):
                    key = (max(inputs), inputs, rank, repr(sorted(attrs.items())))
                    if key > last_key:
                        yield ("library", op, inputs, attrs)
        for count in range(1, min(self.config.max_block_inputs, len(tensors)) + 1):
            for sources in itertools.combinations(range(len(tensors)), count):
                if sources[-1] < newest_from:
                    continue
                for index in range(len(self._schedules_of(tensors, sources))):
                    yield ("block", sources, index)

    def _schedules_of(self, tensors, sources) -> list[Schedule]:
        key = tuple((tensors[i].shape, tensors[i].labels) for i in sources)
        if key not in self._schedules:
            self._schedules[key] = schedules([k[0] for k in key], [k[1] for k in key],
                                             self.gpu, self.config)
        return self._schedules[key]

    def run(self, choices: list[tuple], kernel_ops: int):
        """Yield every complete Program with exactly `kernel_ops` kernel ops whose first op is
        one of `choices` (from top_choices). Raises OutOfTime at the deadline."""
        for choice in choices:
            yield from self._apply(self.inputs, [], [], (), choice, kernel_ops)

    def _apply(self, tensors, ops, scheds, last_key, choice, kernel_ops):
        if not self._can_finish(tensors, ops, choice[2] if choice[0] == "library" else choice[1],
                                kernel_ops):
            return
        if choice[0] == "library":
            yield from self._library(tensors, ops, scheds, last_key, choice, kernel_ops)
        else:
            _, sources, index = choice
            schedule = self._schedules_of(tensors, sources)[index]
            if len(ops) + 1 == kernel_ops and not self.output_labels.issuperset(
                    schedule.grid_labels):
                return
            block = self._open(tensors, sources, schedule)
            yield from self._block(tensors, ops, scheds, last_key, block, kernel_ops)

    def _library(self, tensors, ops, scheds, last_key, choice, kernel_ops):
        _, op, inputs, attrs = choice
        row = LIBRARY_OPS[op]
        shapes = [tensors[i].shape for i in inputs]
        try:
            shape = row.shape(shapes, {**row.attrs, **attrs})
        except MuGraphError:
            return
        term = library_term(op, attrs, [tensors[i].term for i in inputs], shapes)
        final = len(ops) + 1 == kernel_ops
        if final and self._target_of(shape, term) is None:
            return
        if not final and (not self._allowed(term) or self._known(term, tensors)):
            return
        labels = op_labels(row.family, [tensors[i].labels for i in inputs], shapes, shape,
                           {**row.attrs, **attrs}, ("new", len(tensors)))
        name = f"t{len(tensors)}"
        kernel_op = KernelOp(op, tuple(tensors[i].name for i in inputs), (name,), dict(attrs),
                             name=f"{op.lower()}{len(ops)}")
        key = (max(inputs), inputs, LIBRARY_OPS_RANK[op], repr(sorted(attrs.items())))
        reads = frozenset().union(*(tensors[i].reads for i in inputs))
        yield from self._push(tensors + [Tensor(name, shape, labels, term, reads)],
                              ops + [kernel_op],
                              scheds + [None], key, kernel_ops)

    def _can_finish(self, tensors, ops, sources, kernel_ops) -> bool:
        """Can the program still end within kernel_ops ops if this op reads `sources`? Each
        later op reads at most max_block_inputs unused tensors; the last op must read every
        unused one and (with them) every graph input the targets depend on."""
        used = {name for op in ops for name in op.inputs}
        unused = [i for i, t in enumerate(tensors[len(self.inputs):], len(self.inputs))
                  if t.name not in used and i not in sources]
        later = kernel_ops - len(ops) - 1
        if len(unused) > later * self.config.max_block_inputs:
            return False
        if later == 0:
            reads = frozenset().union(*(tensors[i].reads for i in sources))
            return self.target_reads <= reads
        return True

    def _push(self, tensors, ops, scheds, key, kernel_ops):
        """A kernel op was added: emit the program if complete, else extend it."""
        self._tick()
        if len(ops) == kernel_ops:
            program = self._complete(tensors, ops, scheds)
            if program is not None:
                self.counts.complete += 1
                yield program
            return
        for choice in self._kernel_choices(tensors, key, key[0]):
            yield from self._apply(tensors, ops, scheds, key, choice, kernel_ops)

    def _complete(self, tensors, ops, scheds) -> Program | None:
        """Outputs per target (the newest matching tensor); every other tensor must be used."""
        outputs = []
        for index, shape in enumerate(self.targets):
            match = [t for t in tensors[len(self.inputs):] if t.shape == shape
                     and self.space.equivalent(t.term, index)]
            if not match:
                return None
            outputs.append(match[-1].name)
        used = {name for op in ops for name in op.inputs} | set(outputs)
        if any(t.name not in used for t in tensors[len(self.inputs):]):
            return None
        return Program(tuple(ops), tuple(scheds), tuple(outputs))

    # ---- block level -----------------------------------------------------------------------
    def _open(self, tensors, sources, schedule: Schedule) -> OpenBlock:
        grid, loop = schedule.probe
        block = OpenBlock(sources, schedule, grid, loop)
        for slot, index in enumerate(sources):
            tensor = tensors[index]
            imap, fmap = schedule.imaps[slot], schedule.fmaps[slot]
            shape = input_tile_shape(tensor.shape, grid, imap, fmap, loop)
            block.tiles.append(Tile(shape, "loop", tensor.term, fmap != NO_DIM and loop > 1,
                                     tensor.labels))
        return block

    def _block(self, tensors, ops, scheds, last_key, block: OpenBlock, kernel_ops):
        self._tick()
        dead = sum(1 for t in block.tiles if t.uses == 0 and t.phase == "loop")
        if dead == 0:
            yield from self._close(tensors, ops, scheds, last_key, block, kernel_ops)
        room = self.max_block_ops - len(block.ops)
        if room == 0 or dead > room:  # each op retires at most one dead in-loop tile
            return
        newest = block.last_key[0] if block.last_key else 0
        for op in self.tile_ops:
            rank = BLOCK_OPS_RANK[op]
            row = BLOCK_OPS[op]
            for inputs in input_tuples(row.arity, len(block.tiles), newest, op in COMMUTATIVE):
                tiles = [block.tiles[i] for i in inputs]
                if any(t.sealed for t in tiles):
                    continue
                if op in SCALAR_TILE_OPS and not self._scalar_fits(block, op, inputs):
                    continue
                for attrs in self._tile_attrs(op, row, tiles, block):
                    if op in SCALAR_TILE_OPS and not self._constant_left(block, op, attrs):
                        continue
                    attrs_key = repr(sorted(attrs.items()))
                    key = (max(inputs), inputs, rank, attrs_key)
                    if key <= block.last_key:
                        continue
                    tile = self._tile(op, row, tiles, attrs, attrs_key, block)
                    if tile is None:
                        continue
                    for t in tiles:
                        t.uses += 1
                    block.tiles.append(tile)
                    block.ops.append((op, inputs, attrs))
                    saved_key, block.last_key = block.last_key, key
                    try:
                        yield from self._block(tensors, ops, scheds, last_key, block, kernel_ops)
                    finally:
                        block.last_key = saved_key
                        block.ops.pop()
                        block.tiles.pop()
                        for t in tiles:
                            t.uses -= 1

    def _scalar_fits(self, block: OpenBlock, op: str, inputs) -> bool:
        """A constant op never reads another constant op's output: constants are dropped
        from terms, so chains of them would all look right and multiply the space."""
        produced = {len(block.sources) + k: o for k, (o, _, _) in enumerate(block.ops)}
        return all(produced.get(i) not in SCALAR_TILE_OPS for i in inputs)

    def _constant_left(self, block: OpenBlock, op: str, attrs: dict) -> bool:
        """Each constant is applied at most as often as the reference applies it."""
        value = attrs.get("scale", attrs.get("value"))
        used = sum(1 for o, _, a in block.ops if o == op and a == attrs)
        return used < self.constant_uses.get((op, value), 0)

    def _constant_attrs(self, row, choices: list[dict]) -> list[dict]:
        """Each choice once per reference constant its row takes (a scale, a shift, an
        epsilon; constant_choices), none when the reference has no such constant."""
        for attr in ("scale", "value", "eps"):
            if attr in row.attrs:
                values = self.constants[attr] or \
                    ((row.attrs[attr],) if attr == "eps" else ())  # Mirage's rms_norm: no eps
                return [{**c, attr: v} for c in choices for v in values]
        return choices

    def _tile_attrs(self, op, row, tiles, block: OpenBlock) -> list[dict]:
        """Attribute choices; accum_sum_todimx folds a dim that a grid axis concatenated
        (label ("cat", dim, axis label)) back to that dim's size, one width per block."""
        if op != "accum_sum_todimx":
            return self._constant_attrs(row, attr_choices(row, [t.shape for t in tiles]))
        label = tiles[0].labels[-1]
        if not (isinstance(label, tuple) and label[0] == "cat" and label[1] in self.label_size):
            return []
        width = self.label_size[label[1]]
        taken = {a["reduction_dimx"] for o, _, a in block.ops if o == op}
        return [{"reduction_dimx": width}] if taken <= {width} else []

    def _tile(self, op, row, tiles, attrs, attrs_key, block: OpenBlock) -> Tile | None:
        phase = phase_of(op, row.family, [t.phase for t in tiles])
        if phase is None:
            return None
        shapes = tuple(t.shape for t in tiles)
        full = {**row.attrs, **attrs}
        shape_key = (op, attrs_key, shapes)
        if shape_key not in self._shapes:
            try:
                self._shapes[shape_key] = row.shape(shapes, full)
            except MuGraphError:
                self._shapes[shape_key] = None
        shape = self._shapes[shape_key]
        if shape is None:
            return None
        accum = row.family == "accum"
        loop = block.loop if not accum or tiles[0].varies else 1
        terms = [t.term for t in tiles]
        term_key = (op, attrs_key, shapes, loop, *map(id, terms))
        found = self._terms.get(term_key)
        if found is None:  # keeps `terms` alive, so their ids stay theirs
            term = tile_term(op, attrs, terms, shapes, loop, attrs.get("reduction_dimx", 64))
            found = self._terms[term_key] = (term, not self.prune or self.space.allows(term),
                                             terms)
        if not found[1]:
            self.counts.pruned += 1
            return None
        inputs = block.tiles[:len(block.sources)]
        sealed = accum and not tiles[0].varies and not any(tiles[0] is t for t in inputs)
        varies = not accum and any(t.varies for t in tiles)
        labels = op_labels(row.family, [t.labels for t in tiles], shapes, shape, full,
                           ("new", op, len(block.tiles)))
        if op == "accum_sum_todimx":
            labels = labels[:-1] + (tiles[0].labels[-1][1],)
        return Tile(shape, phase, found[0], varies, labels, sealed=sealed)

    def _close(self, tensors, ops, scheds, last_key, block: OpenBlock, kernel_ops):
        count = len(block.sources)
        saved = [i for i, t in enumerate(block.tiles[count:], count) if t.uses == 0]
        if not saved or len(saved) > self.config.max_block_outputs:
            return
        final = len(ops) + 1 == kernel_ops
        if final and len(saved) > len(self.targets):
            return
        reads = frozenset().union(*(tensors[i].reads for i in block.sources))
        choices = [omaps(block.tiles[i].labels, block.tiles[i].shape, block.schedule,
                         concat=not final) for i in saved]
        for maps in itertools.product(*choices):
            outs = []
            for index, omap in zip(saved, maps):
                tile = block.tiles[index]
                try:
                    shape = output_shape(tile.shape, block.grid, omap)
                except MuGraphError:
                    break
                if final and self._target_of(shape, tile.term) is None:
                    break
                if not final and (not self._allowed(tile.term)
                                  or self._known(tile.term, tensors + outs)):
                    break
                labels = list(tile.labels)
                for axis, dim in enumerate(omap):
                    if dim != NO_DIM and labels[dim] != block.schedule.grid_labels[axis]:
                        labels[dim] = ("cat", labels[dim], block.schedule.grid_labels[axis])
                outs.append(Tensor(f"t{len(tensors) + len(outs)}", shape, tuple(labels),
                                   tile.term, reads))
            else:
                kernel_op = self._kernel_op(tensors, block, saved, maps, outs, len(ops))
                key = (max(block.sources), block.sources, BLOCK_RANK, repr(kernel_op.block))
                if key > last_key:
                    yield from self._push(tensors + outs, ops + [kernel_op],
                                          scheds + [block.schedule], key, kernel_ops)

    def _kernel_op(self, tensors, block: OpenBlock, saved, maps, outs, position) -> KernelOp:
        names = [f"in{i}" for i in range(len(block.sources))]
        names += [f"x{i}" for i in range(len(block.sources), len(block.tiles))]
        schedule = block.schedule
        inputs = tuple(BlockInput(names[slot], slot, schedule.imaps[slot], schedule.fmaps[slot])
                       for slot in range(len(block.sources)))
        dimx = {a.get("reduction_dimx", 64) for o, _, a in block.ops if o == "accum_sum_todimx"}
        tile_ops = tuple(BlockOp(op, tuple(names[i] for i in ins), names[count],
                                 {k: v for k, v in attrs.items() if k != "reduction_dimx"})
                         for count, (op, ins, attrs) in enumerate(block.ops, len(block.sources)))
        outputs = tuple(BlockOutput(names[i], omap) for i, omap in zip(saved, maps))
        graph = BlockGraph(block.grid, block.loop, inputs, tile_ops, outputs,
                           reduction_dimx=dimx.pop() if dimx else 64)
        return KernelOp("block", tuple(tensors[i].name for i in block.sources),
                        tuple(t.name for t in outs), block=graph, name=f"fused{position}")


