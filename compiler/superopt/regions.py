"""Subgraph selection for the superoptimizer: convex regions of ops the µGraph level supports.

`select_regions` requires a typed Graph and ensures regions that are convex (no path leaves a
region and re-enters it), hold at most `max_nodes` nodes, and carry a canonical key, so the
same layer repeated N times is searched once. `fuse_regions` is the matching rewrite.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from mlc.compiler.ir.graph import Graph, Node
from mlc.compiler.ir.types import TensorType

from .verify.lowering import LOWERINGS

FLOAT_TYPES = ("float32", "float16", "bfloat16")
# A region worth a search holds at least one op that moves or reduces data across elements.
ANCHORS = {"MatMul", "ReduceSum", "ReduceMean", "ReduceMax", "Softmax"}


@dataclass(frozen=True)
class Region:
    nodes: tuple[str, ...]  # node names, in graph order
    inputs: tuple[str, ...]  # values read from outside, in first-use order
    outputs: tuple[str, ...]  # values used after the region (or graph outputs)
    reference: Graph  # the region alone; every input (weights too) is a graph input
    key: str  # canonical hash: identical regions share it


def supported(node: Node, types: dict[str, TensorType]) -> bool:
    """Can this node be part of a µGraph region (a lowering exists and its operands fit)?"""
    if node.op not in LOWERINGS:
        return False
    operands = [types[n] for n in node.inputs + node.outputs]
    if any(t.dtype not in FLOAT_TYPES or t.rank == 0 for t in operands):
        return False
    if node.op == "MatMul":
        return min(types[n].rank for n in node.inputs) >= 2
    if node.op.startswith("Reduce"):
        axes = node.attrs.get("axes")
        return node.attrs.get("keepdims", 1) == 1 and axes is not None and len(axes) == 1
    return True


def _ancestors(graph: Graph) -> dict[int, set[int]]:
    producer = {out: i for i, n in enumerate(graph.nodes) for out in n.outputs}
    ancestors: dict[int, set[int]] = {}
    for i, node in enumerate(graph.nodes):
        mine = set()
        for name in node.inputs:
            if name in producer:
                p = producer[name]
                mine |= {p} | ancestors[p]
        ancestors[i] = mine
    return ancestors


def _grow(graph: Graph, max_nodes: int, max_matmuls: int) -> list[list[int]]:
    """Greedy convex grouping in topological order, capped in nodes and matmuls (the search
    cost grows with both; Mirage's workloads hold one to three matmuls)."""
    producer = {out: i for i, n in enumerate(graph.nodes) for out in n.outputs}
    ancestors = _ancestors(graph)
    region_of: dict[int, int] = {}
    regions: list[list[int]] = []
    for i, node in enumerate(graph.nodes):
        if not supported(node, graph.types):
            continue
        joined = False
        for r in sorted({region_of[producer[n]] for n in node.inputs
                         if producer.get(n) in region_of}, reverse=True):
            members = set(regions[r])
            matmuls = sum(graph.nodes[j].op == "MatMul" for j in members)
            if len(members) >= max_nodes or (node.op == "MatMul" and matmuls >= max_matmuls):
                continue
            # convex: no ancestor of node i outside the region descends from the region
            outside = ancestors[i] - members
            if any(ancestors[j] & members for j in outside):
                continue
            regions[r].append(i)
            region_of[i] = r
            joined = True
            break
        if not joined:
            region_of[i] = len(regions)
            regions.append([i])
    return regions


def _region(graph: Graph, members: list[int]) -> Region:
    nodes = [graph.nodes[i] for i in members]
    produced = {out for n in nodes for out in n.outputs}
    inputs: list[str] = []
    for n in nodes:
        for x in n.inputs:
            if x not in produced and x not in inputs:
                inputs.append(x)
    later = {x for i, n in enumerate(graph.nodes) if i not in members for x in n.inputs}
    outputs = tuple(o for n in nodes for o in n.outputs
                    if o in later or o in graph.outputs)
    reference = Graph.build(f"region_{nodes[0].name}", {x: graph.types[x] for x in inputs},
                            nodes, outputs)
    return Region(tuple(n.name for n in nodes), tuple(inputs), outputs, reference,
                  region_key(reference))


def region_key(reference: Graph) -> str:
    """A hash of the region's structure and shapes, blind to value and node names."""
    index = {name: f"in{i}" for i, name in enumerate(reference.inputs)}
    body = []
    for n, node in enumerate(reference.nodes):
        for k, out in enumerate(node.outputs):
            index[out] = f"v{n}.{k}"
        body.append([node.op, [index[x] for x in node.inputs], sorted(node.attrs.items())])
    doc = {"inputs": [[list(t.shape), t.dtype] for t in reference.inputs.values()],
           "nodes": body, "outputs": [index[o] for o in reference.outputs]}
    return hashlib.sha256(json.dumps(doc, default=str).encode()).hexdigest()[:16]


def select_regions(graph: Graph, max_nodes: int = 8,
                   max_matmuls: int = 2) -> tuple[list[Region], list[str]]:
    """Regions worth searching, plus notes on what was left as library ops and why."""
    regions, notes = [], []
    for members in _grow(graph, max_nodes, max_matmuls):
        ops = {graph.nodes[i].op for i in members}
        if not ops & ANCHORS:
            notes.append(f"left {len(members)} elementwise node(s) starting at "
                         f"{graph.nodes[members[0]].name!r} as library ops (nothing to fuse "
                         "around)")
            continue
        regions.append(_region(graph, members))
    if not regions:
        notes.append("no region of µGraph-supported ops (matmul, elementwise, reductions, "
                     "softmax) was found; the graph is left as it is")
    return regions, notes


def fuse_regions(graph: Graph, replacements: list[tuple[Region, str]]) -> Graph:
    """Replace each region by one MuGraphCall node carrying its µGraph JSON document."""
    replaced = {name for region, _ in replacements for name in region.nodes}
    calls = {region.nodes[-1]: Node("MuGraphCall", region.inputs, region.outputs,
                                    {"mugraph": document}, f"fused_{region.nodes[0]}")
             for region, document in replacements}
    nodes = []
    for node in graph.nodes:
        if node.name in calls:
            nodes.append(calls[node.name])
        elif node.name not in replaced:
            nodes.append(node)
    return Graph.build(graph.name, graph.inputs, _topological(nodes, graph), graph.outputs,
                       graph.weights)


def _topological(nodes: list[Node], graph: Graph) -> list[Node]:
    """Stable topological order (a call sits where its last member was; consumers between the
    region's nodes move after it)."""
    ready = set(graph.inputs) | set(graph.weights)
    pending, ordered = list(nodes), []
    while pending:
        for k, node in enumerate(pending):
            if all(x in ready for x in node.inputs):
                ordered.append(pending.pop(k))
                ready.update(node.outputs)
                break
        else:
            raise ValueError("fused graph has a cycle; a region was not convex")
    return ordered
