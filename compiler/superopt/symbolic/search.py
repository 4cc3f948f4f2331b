"""Symbolic search (Prism §4): enumerate sGraphs once per workload structure, verify them,
and checkpoint them under a key that ignores the workload's sizes.

The reference is rebuilt at the generic point (dims.py: every logical dim a distinct product
of primes) and the concrete enumerator runs on it with symbolic schedules: a schedule is
which labels the grid axes and the loop split, and its only "size" is the variables' generic
primes. Hence, at no extra machinery:

- symbolic dimension matching: two tile dims are equal at the generic point iff their
  monomials are identical, so an elementwise op or a matmul only pairs tiles whose
  expressions agree for every binding;
- abstract-expression pruning: reduction sizes are the monomials' images, and the target
  e-graph's split rule (sum(n) = sum(j, sum(n/j))) splits a symbolic D at every symbolic
  divisor D/(vars), so a partial sum over D/(g0*f) is a subterm of the target exactly when
  its monomials say so;
- structural caps: the enumerator's (kernel ops, block ops, block inputs and outputs,
  canonical order).

No schedule is dropped for its sizes (there are none yet); the constraint list of each sGraph
(sgraph.py) decides per instantiation. Every complete sGraph is checked by the probabilistic
verifier at a small binding with distinct sizes per symbol (a wrong sGraph goes no further);
formal proofs (verify/formal) run when an sGraph first wins an instantiation, and the
checkpoint keeps them.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import time
from typing import Callable

from mlc.compiler.ir import Graph, TensorType

from ..constants import constant_digest
from ..cost import load_gpu
from ..mugraph.model import NO_DIM, kernel_shapes
from ..mugraph.ops import MuGraphError
from ..prune.space import TargetSpace
from ..prune.terms import ir_output_terms
from ..search import driver
from ..search.enumerate import Counts, Enumerator, OutOfTime
from ..search.generators import DEFAULT_CONFIG, Schedule, _dim_of, dim_labels, label_sizes
from ..search.result import Failures
from ..search.tune import renamed
from ..verify import lower_to_mugraph, verify_each
from .checkpoint import Checkpoint, checkpoint_path, load_checkpoint, store_checkpoint
from .dims import (
    LOOP_VAR,
    SymbolicError,
    generic_size,
    grid_variable,
    symbol,
    variable_prime,
)
from .sgraph import (
    Divides,
    SGraph,
    instantiate,
    sgraph_from_json,
    sgraph_from_program,
    sgraph_to_json,
    violation,
)

__all__ = ["Checkpoint", "checkpoint_path", "data_sizes", "input_symbols", "load_checkpoint",
           "rebind", "store_checkpoint", "structure_key", "symbolic_schedules",
           "symbolic_search", "verify_small"]
STRUCTURE_VERSION = 1  # of the structure key (the checkpoint format has its own)
ENUMERATION_SHARE = 0.8  # of the budget; the rest verifies the sGraphs
SMALL_VARIABLE = 2  # every variable at the small verification binding
SMALL_BASE = 8  # data symbol k is SMALL_BASE + 4k there: distinct, divisible by 2 * 2


# ---- the structure of a workload -------------------------------------------------------------

def input_symbols(reference: Graph, labels: dict | None = None) -> dict[str, tuple]:
    """The data symbol of every input dim (None for size-1 dims), from the dim labels
    (generators.dim_labels of the reference's lowering, computed when not given)."""
    labels = labels or dim_labels(lower_to_mugraph(reference))
    return {name: tuple(None if label is None else symbol(label) for label in labels[name])
            for name in reference.inputs}


def structure_key(reference: Graph, symbols: dict | None = None) -> str:
    """sha256 of the reference with sizes replaced by data symbols (names of the graph and of
    its nodes left out): equal for every shape of one workload."""
    symbols = symbols or input_symbols(reference)
    doc = {"version": STRUCTURE_VERSION,
           "inputs": [[n, list(symbols[n]), t.dtype] for n, t in reference.inputs.items()],
           "weights": [[n, constant_digest(w)] for n, w in reference.weights.items()],
           "nodes": [[n.op, list(n.inputs), list(n.outputs), repr(sorted(n.attrs.items()))]
                     for n in reference.nodes],
           "outputs": list(reference.outputs)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def data_sizes(reference: Graph, symbols: dict | None = None) -> dict[str, int]:
    """The binding of every data symbol of a concrete reference; raises SymbolicError when
    one symbol has two sizes."""
    sizes: dict[str, int] = {}
    for name, row in (symbols or input_symbols(reference)).items():
        for sym, size in zip(row, reference.inputs[name].shape):
            if sym is not None and sizes.setdefault(sym, size) != size:
                raise SymbolicError(f"input {name!r}: {sym} is {size} here and "
                                    f"{sizes[sym]} elsewhere")
    return sizes


def rebind(reference: Graph, symbols: dict[str, tuple], sizes: dict[str, int],
           name: str | None = None) -> Graph:
    """The reference with its inputs at another binding of the data symbols (same nodes)."""
    inputs = {tensor: TensorType(tuple(1 if s is None else sizes[s] for s in symbols[tensor]),
                                 t.dtype) for tensor, t in reference.inputs.items()}
    return Graph.build(name or reference.name, inputs, reference.nodes, reference.outputs,
                       reference.weights)


def generic_sizes(symbols: dict[str, tuple]) -> dict[str, int]:
    return {s: generic_size(int(s[1:])) for row in symbols.values() for s in row if s}


def small_sizes(symbols: dict[str, tuple]) -> dict[str, int]:
    return {s: SMALL_BASE + 4 * int(s[1:]) for row in symbols.values() for s in row if s}


# ---- the enumeration with symbolic schedules ----------------------------------------------

class SymbolicEnumerator(Enumerator):
    """The enumerator with one schedule per (grid labels, loop label): the variables'
    generic primes are its only size."""

    def _schedules_of(self, tensors, sources) -> list[Schedule]:
        key = tuple((tensors[i].shape, tensors[i].labels) for i in sources)
        if key not in self._schedules:
            self._schedules[key] = symbolic_schedules([k[0] for k in key],
                                                      [k[1] for k in key], self.config)
        return self._schedules[key]


def symbolic_schedules(shapes, labels, config=DEFAULT_CONFIG) -> list[Schedule]:
    """Every (grid labels, loop label) choice over block inputs with these dim labels; only
    data dims (int labels) are split, since only they have symbols."""
    sizes = label_sizes(shapes, labels)
    order = sorted((label for label in sizes if isinstance(label, int)), key=repr)
    found = []
    for count in range(1, config.max_grid_dims + 1):
        for grid_labels in itertools.combinations(order, count):
            imaps = tuple(tuple(_dim_of(row, grid_labels[a]) if a < count else NO_DIM
                                for a in range(3)) for row in labels)
            grid = tuple(variable_prime(grid_variable(label)) for label in grid_labels)
            grid += (1,) * (3 - count)
            for loop_label in (None, *order):
                fmaps = tuple(_dim_of(row, loop_label) for row in labels)
                loop = 1 if loop_label is None else variable_prime(LOOP_VAR)
                found.append(Schedule(grid_labels, loop_label, imaps, fmaps, ((grid, loop),)))
    return found


def _run_symbolic_task(task) -> tuple[Counts, list, bool]:
    """Enumerate one share of the first kernel op's choices; return counts, the sGraphs found
    (JSON) and whether the deadline cut it short."""
    kernel_ops, choices = task
    enumerator: Enumerator = driver._CONTEXT["enumerator"]
    generic, symbols = driver._CONTEXT["reference"], driver._CONTEXT["symbols"]
    enumerator.counts = Counts()
    found, timed_out = [], False
    inputs = {name: tuple(t.shape) for name, t in generic.inputs.items()}
    try:
        for program in enumerator.run(choices, kernel_ops):
            rename = dict(zip(program.outputs, generic.outputs))
            ops = [renamed(op, rename) for op in program.ops]
            try:
                sgraph = sgraph_from_program(ops, program.schedules, inputs, generic.outputs,
                                             symbols, generic.name)
            except (MuGraphError, SymbolicError):
                continue
            found.append(sgraph_to_json(sgraph))
    except OutOfTime:
        timed_out = True
    return enumerator.counts, found, timed_out


# ---- the search ------------------------------------------------------------------------------

def symbolic_search(reference: Graph, *, gpu="h100", budget_s: float = 60.0,
                    max_kernel_ops: int = 1, max_block_ops: int = 7, seed: int = 0,
                    workers: int | None = None, prune: bool = True,
                    progress: Callable | None = None) -> Checkpoint:
    """Every verified sGraph of `reference`'s structure found within `budget_s` seconds.

    Requires a reference whose ops the abstract expressions cover. Ensures sGraphs that the
    probabilistic verifier accepted at a small binding of distinct sizes, each with its
    constraint list; sizes of `reference` play no part beyond its structure.
    """
    start = time.monotonic()
    spec = load_gpu(gpu) if isinstance(gpu, str) else gpu
    workers = workers or os.cpu_count() or 1
    notify = progress or (lambda message="", **_: None)
    symbols = input_symbols(reference)
    generic = rebind(reference, symbols, generic_sizes(symbols), name=reference.name)
    space = TargetSpace(ir_output_terms(generic), timeout_s=min(15.0, max(0.5, budget_s / 5)))
    enumerator = SymbolicEnumerator(generic, spec, space, max_kernel_ops=max_kernel_ops,
                                    max_block_ops=max_block_ops, prune=prune,
                                    config=DEFAULT_CONFIG,
                                    deadline=start + budget_s * ENUMERATION_SHARE)
    driver._CONTEXT.update(enumerator=enumerator, reference=generic, symbols=symbols, gpu=spec)
    tasks = driver.split_tasks(enumerator.top_choices(), max_kernel_ops, workers)
    counts, found, exhausted = Counts(), {}, False
    try:  # closing: an exception here (Ctrl-C) ends the worker pool at once
        with contextlib.closing(driver.run_tasks(tasks, workers, _run_symbolic_task)) as results:
            for done, (task_counts, docs, timed_out) in enumerate(results, 1):
                counts.add(task_counts)
                exhausted |= timed_out
                for doc in docs:
                    found.setdefault(json.dumps(doc, sort_keys=True), doc)
                notify(f"{done}/{len(tasks)} tasks, {counts.visited} states, {len(found)} "
                       "sGraphs", done=done, total=len(tasks), enumerated=counts.visited)
    finally:
        driver._CONTEXT.clear()
    sgraphs = [sgraph_from_json(found[text]) for text in sorted(found)]
    notify(f"verifying {len(sgraphs)} sGraph(s) at a small binding")
    skipped: list[str] = []
    failures = Failures()
    verified = verify_small(sgraphs, reference, symbols, seed, skipped, failures)
    options = {"max_kernel_ops": max_kernel_ops, "max_block_ops": max_block_ops,
               "seed": seed, "prune": prune}
    notes = [f"{len(skipped)} sGraph(s) skipped at the small binding; first: {skipped[0]}"
             ] if skipped else []
    return Checkpoint(structure_key(reference, symbols), verified, counts.visited, counts.pruned,
                      counts.complete, len(sgraphs) - len(verified),
                      time.monotonic() - start, budget_s, exhausted, options,
                      notes=notes, failures=failures)


def small_assignments(sgraph: SGraph) -> list[dict | None]:
    return [None if kernel is None else {v: SMALL_VARIABLE for v in kernel.variables}
            for kernel in sgraph.kernels]


def verify_small(sgraphs: list[SGraph], reference: Graph, symbols: dict, seed: int,
                 skipped: list[str] | None = None,
                 failures: Failures | None = None) -> list[SGraph]:
    """The sGraphs the probabilistic verifier accepts at the small binding (every variable 2,
    symbol Dk = 8 + 4k): a wrong structure fails there, whatever its sizes.

    An sGraph whose constraints the small binding cannot meet exactly (a variable that does
    not divide its dim would leave a tile dim of 0 or a truncated one) is skipped, with the
    reason appended to `skipped`; one whose check raises is dropped and counted in
    `failures`. Neither is ever accepted."""
    if not sgraphs:
        return []
    sizes = small_sizes(symbols)
    small = rebind(reference, symbols, sizes)
    failures = failures if failures is not None else Failures()
    graphs, kept = [], []
    for index, sgraph in enumerate(sgraphs):
        try:
            why = small_binding_problem(sgraph, sizes)
            if why is None:
                graph = instantiate(sgraph, sizes, small_assignments(sgraph))
                kernel_shapes(graph)  # every tile divides exactly at this binding
        except (MuGraphError, SymbolicError) as err:
            why = str(err)
        if why is not None:
            if skipped is not None:
                skipped.append(f"sGraph {index} ({sgraph.describe()}): {why}")
            continue
        graphs.append(graph)
        kept.append(sgraph)
    verdicts = verify_each(graphs, small, seed=seed,
                           on_error=lambda err: failures.add("verify", err)) if graphs else []
    return [s for s, verdict in zip(kept, verdicts) if verdict is not None and verdict.equivalent]


def small_binding_problem(sgraph: SGraph, sizes: dict) -> str | None:
    """Why the small binding does not instantiate `sgraph` exactly (None: it does): every
    variable must divide the dim it splits, so every tile dim is a whole number >= 1."""
    for kernel, assignment in zip(sgraph.kernels, small_assignments(sgraph)):
        if kernel is None:
            continue
        for constraint in kernel.constraints:
            if isinstance(constraint, Divides):
                why = violation(constraint, sizes, assignment, None)
                if why is not None:
                    return why
    return None
