"""Series-parallel decomposition of an operator DAG, and coarsening into planning units.

`decompose` splits a convex node set into a series of pieces at single-producer or
single-consumer cuts of a topological order, or into parallel, weakly connected components.
A piece with neither structure is made series-parallel by serializing it in topological order
(an edge-adding SP-ization: it never duplicates nodes and every prefix stays convex).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlc.compiler.ir import Graph


@dataclass(frozen=True)
class SPNode:
    """A leaf (one op), a series (children run one after another), or a parallel block."""

    kind: str  # "leaf" | "series" | "parallel"
    ops: tuple[str, ...]  # every op below, in topological order
    children: tuple[SPNode, ...] = ()

    def leaves(self) -> list[str]:
        return list(self.ops)


def op_dag(graph: Graph) -> tuple[list[str], dict[str, set[str]], dict[str, set[str]]]:
    """(ops in topological order, successors, predecessors) of a graph's nodes."""
    producer = {out: n.name for n in graph.nodes for out in n.outputs}
    order = [n.name for n in graph.nodes]  # Graph.build keeps nodes topologically sorted
    succ: dict[str, set[str]] = {name: set() for name in order}
    pred: dict[str, set[str]] = {name: set() for name in order}
    for node in graph.nodes:
        for value in node.inputs:
            if value in producer:
                succ[producer[value]].add(node.name)
                pred[node.name].add(producer[value])
    return order, succ, pred


def _components(ops: list[str], succ, pred) -> list[list[str]]:
    members, seen, comps = set(ops), set(), []
    index = {op: i for i, op in enumerate(ops)}
    for op in ops:
        if op in seen:
            continue
        stack, comp = [op], []
        seen.add(op)
        while stack:
            cur = stack.pop()
            comp.append(cur)
            for nxt in (succ[cur] | pred[cur]) & members:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        comps.append(sorted(comp, key=index.__getitem__))
    return comps


def _series_cuts(ops: list[str], succ, pred) -> list[int]:
    """Positions i where ops[:i] -> ops[i:] is a series composition: the prefix has one sink
    that feeds every source of the suffix, or the suffix has one source fed by every prefix
    sink (so no op of one side is independent of the other)."""
    members, cuts = set(ops), []
    position = {op: i for i, op in enumerate(ops)}
    for i in range(1, len(ops)):
        sinks = [op for op in ops[:i] if not any(position[n] < i for n in succ[op] & members)]
        sources = [op for op in ops[i:]
                   if not any(position[n] >= i for n in pred[op] & members)]
        if len(sinks) == 1 and all(sinks[0] in pred[src] for src in sources):
            cuts.append(i)
        elif len(sources) == 1 and all(sources[0] in succ[snk] for snk in sinks):
            cuts.append(i)
    return cuts


def decompose(ops: list[str], succ, pred) -> SPNode:
    """The SP tree of a convex, topologically ordered op list.

    Requires: `ops` is convex in the DAG (succ/pred) and topologically ordered.
    Ensures: the leaves, read left to right, are `ops`; parallel children share no edge; every
    edge between series children goes from an earlier child to a later one.
    """
    if len(ops) == 1:
        return SPNode("leaf", (ops[0],))
    comps = _components(ops, succ, pred)
    if len(comps) > 1:
        return SPNode("parallel", tuple(ops), tuple(decompose(c, succ, pred) for c in comps))
    cuts = _series_cuts(ops, succ, pred)
    bounds = [0, *cuts, len(ops)] if cuts else list(range(len(ops) + 1))  # serialize fallback
    pieces = [ops[a:b] for a, b in zip(bounds, bounds[1:])]
    return SPNode("series", tuple(ops), tuple(decompose(p, succ, pred) for p in pieces))


def graph_sp_tree(graph: Graph) -> SPNode:
    """The SP tree of a whole graph (see `decompose`)."""
    order, succ, pred = op_dag(graph)
    return decompose(order, succ, pred)


def coarsen(tree: SPNode, weight, limit: float) -> SPNode:
    """Fold every subtree whose total `weight(ops)` is at most `limit` into one leaf-like unit
    (kind "unit"), and merge runs of adjacent small series children the same way.

    Ensures: `ops` keep their order; parallel children are sorted heaviest first (still a
    topological order of units); units are convex (a subtree, or a run of series children).
    """
    if tree.kind == "leaf" or weight(tree.ops) <= limit:
        return SPNode("unit", tree.ops)
    children = [coarsen(c, weight, limit) for c in tree.children]
    if tree.kind == "series":
        merged: list[SPNode] = []
        for child in children:
            if (merged and merged[-1].kind == "unit" and child.kind == "unit"
                    and weight(merged[-1].ops + child.ops) <= limit):
                merged[-1] = SPNode("unit", merged[-1].ops + child.ops)
            else:
                merged.append(child)
        children = merged
        if len(children) == 1:
            return children[0]
    else:  # heaviest branch first, so "the cheapest branches" is always a suffix
        children.sort(key=lambda c: -weight(c.ops))
    return SPNode(tree.kind, tree.ops, tuple(children))


def units(tree: SPNode) -> list[SPNode]:
    """The planning units (unit/leaf nodes) of a coarsened tree, in order."""
    if tree.kind in ("unit", "leaf"):
        return [tree]
    return [u for child in tree.children for u in units(child)]
