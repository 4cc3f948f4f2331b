"""Formal equivalence: a µGraph's lifted terms proven equal to an IR graph's reference terms
by equality saturation under the rule set (rules.py), with bounded effort.

The run is bounded three ways: an iteration cap, an e-graph size cap checked between
iterations (it stops when the last iteration's growth factor would carry the next one past
the cap), and a wall-time cap checked between iterations. A proof holds for every grid size,
loop count and tensor size the names stand for (names a later kernel reuses from an earlier
one, see lift.py, keep their sizes equal). Failing to prove says nothing about the
candidate being wrong: the result is "proven" or "not proven", never "not equal".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from egglog import EGraph, eq

from mlc.compiler.ir import Graph

from ...mugraph.model import MuGraph
from ...mugraph.ops import MuGraphError
from .egraph import BATCH_DIMS, batch_dim, formal_ruleset, to_egglog
from .lift import LiftError, lift_mugraph, reference_terms
from .terms import Term

MAX_ITERATIONS = 30
MAX_ENODES = 200_000
MAX_SECONDS = 10.0


@dataclass(frozen=True)
class Proof:
    """The outcome of one formal check; `reason` says why it is not proven (empty if proven)."""

    proven: bool
    seconds: float
    iterations: int
    enodes: int
    reason: str = ""


def prove_terms(candidate: dict[str, Term], reference: dict[str, Term], *,
                max_iterations: int = MAX_ITERATIONS, max_enodes: int = MAX_ENODES,
                max_seconds: float = MAX_SECONDS) -> Proof:
    """Prove each candidate output term equal to the reference term of the same name.

    Requires: the same output names on both sides. Ensures: proven only if every pair is
    equal in the e-graph; stops at the first iteration where all are, or at a bound.
    """
    start = time.perf_counter()
    missing = sorted(set(reference) - set(candidate))
    if missing:
        return Proof(False, 0.0, 0, 0, f"candidate lacks output(s) {missing}")
    egraph = EGraph()
    for dim in BATCH_DIMS:
        egraph.register(batch_dim(dim))
    goals = []
    for index, name in enumerate(sorted(reference)):
        lhs = egraph.let(f"candidate_{index}", to_egglog(candidate[name]))
        rhs = egraph.let(f"reference_{index}", to_egglog(reference[name]))
        goals.append(eq(lhs).to(rhs))
    rules = formal_ruleset()
    iterations, enodes, growth = 0, 0, 1.0
    reason = ""
    while True:
        if all(egraph.check_bool(goal) for goal in goals):
            return Proof(True, time.perf_counter() - start, iterations, enodes)
        if iterations >= max_iterations:
            reason = f"iteration cap {max_iterations} reached"
            break
        if enodes * growth > max_enodes:  # one iteration can multiply the size: look ahead
            reason = f"e-graph of {enodes} nodes would grow past {max_enodes}"
            break
        if time.perf_counter() - start > max_seconds:
            reason = f"time cap {max_seconds:g} s reached"
            break
        report = egraph.run(rules)
        iterations += 1
        previous, enodes = enodes, sum(size for _, size in egraph.all_function_sizes())
        growth = max(1.0, enodes / max(previous, 1))
        if not report.updated:
            reason = "the rules saturated without making the terms equal"
            break
    return Proof(False, time.perf_counter() - start, iterations, enodes, reason)


def prove_mugraph(graph: MuGraph, reference: Graph, **bounds) -> Proof:
    """Prove a µGraph equal to an IR reference graph for every instantiation of its sizes.

    Ensures: a Proof; ops without a formal term or a graph that does not validate give
    proven=False with the reason, never an exception.
    """
    start = time.perf_counter()
    try:
        candidate = lift_mugraph(graph)
        target = reference_terms(reference)
    except (LiftError, MuGraphError) as err:
        return Proof(False, time.perf_counter() - start, 0, 0, str(err))
    return prove_terms(candidate, target, **bounds)
