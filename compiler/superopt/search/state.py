"""The enumeration's state records and small rules: kernel tensors, open block graphs and their
tiles, counts, complete programs; tile phases (as model.block_shapes decides them) and the
canonical input tuples of a new op."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from mlc.compiler.ir import Graph

from ..mugraph.model import KernelOp
from ..mugraph.ops import RUNNING_ACCUMS
from .generators import Schedule


class OutOfTime(Exception):
    """The deadline passed; the enumeration stops where it is."""


@dataclass
class Counts:
    visited: int = 0  # states entered (kernel and block level)
    pruned: int = 0  # new tiles / tensors rejected by the abstract expressions
    complete: int = 0  # programs whose outputs match the targets

    def add(self, other: Counts) -> None:
        self.visited += other.visited
        self.pruned += other.pruned
        self.complete += other.complete


@dataclass(frozen=True)
class Tensor:
    """A kernel-level tensor during the search."""

    name: str
    shape: tuple
    labels: tuple
    term: tuple
    reads: frozenset  # the graph inputs it may depend on


@dataclass(frozen=True)
class Program:
    """A complete candidate at probe sizes: kernel ops, the schedule of each block op (None for
    library ops), and which tensor is each target output."""

    ops: tuple[KernelOp, ...]
    schedules: tuple[Schedule | None, ...]
    outputs: tuple[str, ...]


@dataclass
class Tile:
    shape: tuple
    phase: str  # "loop" | "after" | "both", as model.block_shapes
    term: tuple
    varies: bool  # changes between loop iterations (accumulators need the true range)
    labels: tuple
    uses: int = 0
    sealed: bool = False  # sums a loop-invariant non-input tile: may only be saved


@dataclass
class OpenBlock:
    sources: tuple[int, ...]  # kernel tensor indices
    schedule: Schedule
    grid: tuple
    loop: int
    tiles: list = field(default_factory=list)
    ops: list = field(default_factory=list)  # (op, input indices, attrs)
    last_key: tuple = ()


def graph_reads(graph: Graph) -> frozenset:
    """The graph inputs the outputs depend on."""
    reads = {name: frozenset([name]) for name in graph.inputs}
    for node in graph.nodes:
        depends = frozenset().union(*(reads.get(t, frozenset()) for t in node.inputs))
        reads.update((out, depends) for out in node.outputs)
    return frozenset().union(*(reads[name] for name in graph.outputs))


def phase_of(op: str, family: str, phases: list[str]) -> str | None:
    """Phase of a tile op's output, or None where model.block_shapes would refuse it."""
    if family == "accum":
        if phases[0] != "loop":
            return None
        if op in ("accum_sum_rescale", "accum_sum_ld_rescale") and phases[1] != "both":
            return None
        return "both" if op in RUNNING_ACCUMS else "after"
    if "loop" in phases and "after" in phases:
        return None
    return "loop" if "loop" in phases else ("after" if "after" in phases else "both")


def attr_choices(row, shapes) -> list[dict]:
    """Reductions try each dim of size > 1; other ops take their defaults."""
    if "dim" in row.attrs:
        return [{"dim": d} for d, size in enumerate(shapes[0]) if size > 1]
    return [{}]


@functools.lru_cache(maxsize=4096)
def input_tuples(arity: int, count: int, newest_from: int, commutative: bool):
    """Input index tuples whose largest index is >= newest_from (smaller keys cannot follow)."""
    if arity == 1:
        return tuple((i,) for i in range(newest_from, count))
    pairs = []
    for top in range(newest_from, count):
        for other in range(top + 1):
            pairs.append((other, top))
            if not commutative and other != top:
                pairs.append((top, other))
    return tuple(pairs)
