"""The target space: every term that is a subexpression of some expression equivalent to a
target, as Mirage's egg pruning on `main` computes it: saturate the targets' e-graph once,
then answer each candidate by lookup.

After saturation the e-graph is read out once into a Python hash-cons (e-node -> e-class), so
`allows` walks a term bottom-up through dict lookups (microseconds, cached per term) and never
touches, or grows, the e-graph.

Saturation runs in two phases. The core rules (rules.core_rules) must saturate within the
bounds; then the expansion rule (a*(b+c) -> a*b + a*c) runs until it saturates or the e-graph
passes `expand_nodes` e-nodes (a node bound, not a time bound, so the answers do not depend on
the machine). If the core does not saturate, the space is `open`: allows and equivalent answer
True for everything (pruning off, verification decides), so a correct program is never lost
to an unfinished e-graph.

    >>> from .terms import rsum, var
    >>> space = TargetSpace([rsum(8, ("mul", var("X"), var("W")))])
    >>> space.allows(rsum(4, ("mul", var("W"), var("X")))), space.allows(("exp", var("X")))
    (True, False)
"""

from __future__ import annotations

import time

from egglog import EGraph, i64, ruleset

from .rules import CONSTRUCTORS, core_rules, expansion_rules, split
from .terms import REDUCTIONS, Term, reduction, rms

MISSING = -1  # class id of a term the e-graph does not hold


def canonical(term: Term) -> Term:
    """Merge nested reductions and drop size-1 ones, as the terms.py constructors do; spell
    ("rms", n, x) out as sqrt(sum(n, x * x)). Raises ValueError on an unknown op."""
    op = term[0]
    if op == "var":
        return term
    if op in REDUCTIONS:
        return reduction(op, term[1], canonical(term[2]))
    if op == "rms":
        return rms(term[1], canonical(term[2]))
    if op not in CONSTRUCTORS:
        raise ValueError(f"unknown term op {op!r} in {term!r}")
    return (op, *(canonical(t) for t in term[1:]))


def reduction_sizes(term: Term, into: set[int]) -> set[int]:
    if term[0] in REDUCTIONS:
        into.add(term[1])
    if term[0] != "var":
        for child in term[1:]:
            if isinstance(child, tuple):
                reduction_sizes(child, into)
    return into


def proper_divisors(n: int) -> list[int]:
    return [d for d in range(2, n // 2 + 1) if n % d == 0]


def _to_egglog(term: Term):
    op = term[0]
    if op == "var":
        return CONSTRUCTORS["var"](term[1])
    if op in REDUCTIONS:
        return CONSTRUCTORS[op](term[1], _to_egglog(term[2]))
    if op not in CONSTRUCTORS:
        raise ValueError(f"unknown term op {op!r} in {term!r}")
    return CONSTRUCTORS[op](*(_to_egglog(t) for t in term[1:]))


class TargetSpace:
    """The saturated e-graph of `targets` (terms.py terms), queried by lookup.

    Bounds: `max_iterations` per phase, `max_nodes` e-nodes (checked after every iteration:
    egglog has no node limit of its own), `timeout_s` for both phases together, and
    `expand_nodes` for the expansion phase (0 skips it). `stats` says what happened:
    saturated (the core rules), expanded (the expansion phase saturated too), iterations,
    nodes, classes, seconds, split_sizes.
    """

    def __init__(self, targets: list[Term], *, max_iterations: int = 40,
                 max_nodes: int = 200_000, timeout_s: float = 30.0,
                 expand_nodes: int = 30_000):
        start = time.perf_counter()
        self.targets = [canonical(t) for t in targets]
        sizes: set[int] = set()
        for target in self.targets:
            reduction_sizes(target, sizes)
        egraph = EGraph()
        for target in self.targets:
            egraph.register(_to_egglog(target))
        for size in sorted(sizes):
            for divisor in proper_divisors(size):
                egraph.register(split(i64(size), i64(divisor)))
        deadline = start + timeout_s
        core = ruleset(*core_rules())
        saturated, iterations = _saturate(egraph, core, max_iterations, max_nodes, deadline)
        expanded, more = False, 0
        if saturated and expand_nodes > 0:
            everything = ruleset(*core_rules(), *expansion_rules())
            expanded, more = _saturate(egraph, everything, max_iterations,
                                       min(max_nodes, expand_nodes), deadline)
        self.open = not saturated
        self._nodes, self._classes = _read_out(egraph)
        self._cache: dict[Term, int] = {}
        self._target_ids = [self.class_id(t) for t in self.targets]
        self.stats = {"saturated": saturated, "expanded": expanded,
                      "iterations": iterations + more, "nodes": len(self._nodes),
                      "classes": self._classes, "split_sizes": sorted(sizes),
                      "seconds": round(time.perf_counter() - start, 3)}

    # ---- queries -----------------------------------------------------------------------
    def allows(self, term: Term) -> bool:
        """Is `term` a subexpression of an expression equivalent to one of the targets?"""
        return self.open or self.class_id(term) != MISSING

    def equivalent(self, term: Term, index: int) -> bool:
        """Is `term` equal to targets[index] under the rules (True when the space is open)?"""
        return self.open or self.class_id(term) == self._target_ids[index]

    def class_id(self, term: Term) -> int:
        """The e-class holding `term`, or MISSING; cached per term."""
        found = self._cache.get(term)
        if found is None:
            found = self._cache[term] = self._class_of(canonical(term))
        return found

    def _class_of(self, term: Term) -> int:
        op = term[0]
        if op == "var":
            return self._nodes.get(term, MISSING)
        if op in REDUCTIONS:
            child = self.class_id(term[2])
            return MISSING if child == MISSING else self._nodes.get((op, term[1], child), MISSING)
        children = []
        for sub in term[1:]:
            child = self.class_id(sub)
            if child == MISSING:
                return MISSING
            children.append(child)
        return self._nodes.get((op, *children), MISSING)


def _saturate(egraph: EGraph, rules, max_iterations: int, max_nodes: int,
              deadline: float) -> tuple[bool, int]:
    """Run one iteration at a time until nothing changes (True) or a bound is hit (False)."""
    for iteration in range(1, max_iterations + 1):
        report = egraph.run(rules * 1)
        if not report.updated:
            return True, iteration
        nodes = sum(size for _, size in egraph.all_function_sizes())
        if nodes > max_nodes or time.perf_counter() > deadline:
            return False, iteration
    return False, max_iterations


def _read_out(egraph: EGraph) -> tuple[dict[tuple, int], int]:
    """Every e-node as a hash-cons key (op, child class ids... / size) -> its class id."""
    low = egraph._egraph  # the bindings' e-graph: frozen rows are canonical after a run
    frozen = low.freeze()
    ids: dict = {}

    def class_id(value) -> int:
        return ids.setdefault(value, len(ids))

    nodes: dict[tuple, int] = {}
    for name, function in frozen.functions.items():
        if not name.startswith("ab_") or function.is_let_binding:
            continue
        op = name[len("ab_"):]
        for row in function.rows:
            if op == "var":
                key = (op, low.value_to_string(row.inputs[0]))
            elif op in REDUCTIONS:
                key = (op, low.value_to_i64(row.inputs[0]), class_id(row.inputs[1]))
            else:
                key = (op, *(class_id(v) for v in row.inputs))
            nodes[key] = class_id(row.output)
    return nodes, len(ids)
