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

from .constants import NORMS, absorbed_constants, constant_digest
from .search.generators import DEFAULT_CONFIG
from .verify.lowering import LOWERINGS

FLOAT_TYPES = ("float32", "float16", "bfloat16")
# A region worth a search holds at least one op that moves or reduces data across elements.
ANCHORS = {"MatMul", "ReduceSum", "ReduceMean", "ReduceMax", "Softmax"}
# A region is one kernel's worth: no more outside inputs than a block kernel may read.
MAX_REGION_INPUTS = DEFAULT_CONFIG.max_block_inputs


@dataclass(frozen=True)
class Region:
    nodes: tuple[str, ...]  # node names, in graph order
    inputs: tuple[str, ...]  # values read from outside, in first-use order
    outputs: tuple[str, ...]  # values used after the region (or graph outputs)
    reference: Graph  # the region alone; every input (weights too) is a graph input
    key: str  # canonical hash: identical regions share it


def supported(node: Node, graph: Graph) -> bool:
    """Can this node be part of a µGraph region (a lowering exists and its operands fit)?
    Constants the lowering absorbs (constants.py) are not operands."""
    if node.op not in LOWERINGS:
        return False
    types = graph.types
    absorbed = absorbed_constants(node, graph)
    operands = [types[n] for n in node.inputs + node.outputs if n not in absorbed]
    if any(t.dtype not in FLOAT_TYPES or t.rank == 0 for t in operands):
        return False
    if node.op in NORMS:
        rank = types[node.inputs[0]].rank
        return len(node.outputs) == 1 and node.attrs.get("axis", -1) % rank == rank - 1
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


def _grow(graph: Graph, max_nodes: int, max_matmuls: int, max_inputs: int) -> list[list[int]]:
    """Greedy convex grouping in topological order. A node joins a region only if the region
    stays searchable as one kernel:

    - at most `max_nodes` nodes and `max_matmuls` matmuls (search cost grows with both; Mirage's
      workloads hold one to three matmuls) and `max_inputs` outside inputs (a block kernel's
      input cap);
    - matmuls that share their left operand (the gated MLP's two projections, Q/K/V) go
      together: such a matmul joins its siblings' region, not its producer's;
    - a matmul consumes another matmul of its region only through an Exp or Softmax (the
      attention pattern, fusable with an online softmax); other chains start a new region.
    """
    producer = {out: i for i, n in enumerate(graph.nodes) for out in n.outputs}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            consumers.setdefault(name, []).append(i)
    ancestors = _ancestors(graph)
    region_of: dict[int, int] = {}
    regions: list[list[int]] = []

    fused_paths = _supported_ancestors(graph)

    def siblings(i: int) -> set[int]:
        """Matmuls sharing i's left operand whose results meet again through supported ops
        (the gated MLP's silu(x @ Wg) * (x @ Wu)); Q / K / V projections that part ways
        through a head reshape are better as separate matmul + bias regions."""
        left = graph.nodes[i].inputs[0]
        return {j for j in consumers.get(left, ()) if j != i and graph.nodes[j].op == "MatMul"
                and any({i, j} <= seen for seen in fused_paths.values())}

    def fits(i: int, members: set[int]) -> bool:
        node = graph.nodes[i]
        if len(members) >= max_nodes:
            return False
        if node.op == "MatMul":
            upstream = [j for j in members & ancestors[i] if graph.nodes[j].op == "MatMul"]
            if sum(graph.nodes[j].op == "MatMul" for j in members) >= max_matmuls:
                return False
            through = any(graph.nodes[j].op in ("Exp", "Softmax") for j in members & ancestors[i])
            if upstream and not through:
                return False
            parallel = {j for j in members - ancestors[i] if graph.nodes[j].op == "MatMul"}
            if parallel - siblings(i):
                return False  # independent matmuls: one region each
            if not upstream and not parallel and len(_reads(graph, members)) > 1:
                return False  # a prologue that reads several tensors (RoPE's x * cos +
                # rotate(x) * sin) would leave the matmul no inputs for its epilogue
        upstream_matmul = any(graph.nodes[j].op == "MatMul" for j in members & ancestors[i])
        if not upstream_matmul and any(x in graph.weights for x in _operands(graph, i)) \
                and node.op != "MatMul":
            return False  # a constant-vector op (bias, norm affine) fuses as a matmul's
            # epilogue; before any matmul it would spend a kernel input on little work
        if node.op in NORMS:
            return False  # a norm opens a region, as the prologue of the matmul it feeds:
            # after a matmul it would need whole output rows per block
        produced = {o for j in members for o in graph.nodes[j].outputs}
        outside = {x for j in list(members) + [i] for x in _operands(graph, j)} - produced
        if len(outside - set(node.outputs)) > max_inputs:
            return False
        # convex: no ancestor of node i outside the region descends from the region
        return not any(ancestors[j] & members for j in ancestors[i] - members)

    for i, node in enumerate(graph.nodes):
        if not supported(node, graph):
            continue
        candidates = set()
        if node.op == "MatMul" and siblings(i):
            candidates = {region_of[j] for j in siblings(i) if j in region_of}
        if not candidates:  # the first of its siblings may still join its producer's region
            candidates = {region_of[producer[n]] for n in node.inputs
                          if producer.get(n) in region_of}
        for r in sorted(candidates, reverse=True):
            if fits(i, set(regions[r])):
                regions[r].append(i)
                region_of[i] = r
                break
        else:
            region_of[i] = len(regions)
            regions.append([i])
    return regions


def _reads(graph: Graph, members: set[int]) -> set[str]:
    """The outside values a set of nodes reads (absorbed constants aside)."""
    produced = {o for j in members for o in graph.nodes[j].outputs}
    return {x for j in members for x in _operands(graph, j)} - produced


def _operands(graph: Graph, index: int) -> list[str]:
    """The inputs of node `index` that a region must read (absorbed constants are not)."""
    node = graph.nodes[index]
    absorbed = absorbed_constants(node, graph)
    return [x for x in node.inputs if x not in absorbed]


def _supported_ancestors(graph: Graph) -> dict[int, set[int]]:
    """For each supported node, the supported nodes it reaches through supported ops only."""
    producer = {out: i for i, n in enumerate(graph.nodes) for out in n.outputs}
    reach: dict[int, set[int]] = {}
    for i, node in enumerate(graph.nodes):
        if not supported(node, graph):
            continue
        mine: set[int] = set()
        for name in node.inputs:
            p = producer.get(name)
            if p is not None and p in reach:
                mine |= {p} | reach[p]
        reach[i] = mine
    return reach


def _region(graph: Graph, members: list[int]) -> Region:
    nodes = [graph.nodes[i] for i in members]
    produced = {out for n in nodes for out in n.outputs}
    inputs: list[str] = []
    for i in members:
        for x in _operands(graph, i):
            if x not in produced and x not in inputs:
                inputs.append(x)
    constants = {x: graph.weights[x] for i in members
                 for x in set(graph.nodes[i].inputs) - set(_operands(graph, i))}
    later = {x for i, n in enumerate(graph.nodes) if i not in members for x in n.inputs}
    outputs = tuple(o for n in nodes for o in n.outputs
                    if o in later or o in graph.outputs)
    reference = Graph.build(f"region_{nodes[0].name}", {x: graph.types[x] for x in inputs},
                            nodes, outputs, constants)
    return Region(tuple(n.name for n in nodes), tuple(inputs), outputs, reference,
                  region_key(reference))


def region_key(reference: Graph) -> str:
    """A hash of the region's structure and shapes, blind to value and node names."""
    index = {name: f"in{i}" for i, name in enumerate(reference.inputs)}
    index.update({name: f"c{i}" for i, name in enumerate(reference.weights)})
    body = []
    for n, node in enumerate(reference.nodes):
        for k, out in enumerate(node.outputs):
            index[out] = f"v{n}.{k}"
        body.append([node.op, [index[x] for x in node.inputs], sorted(node.attrs.items())])
    doc = {"inputs": [[list(t.shape), t.dtype] for t in reference.inputs.values()],
           "constants": [constant_digest(w) for w in reference.weights.values()],
           "nodes": body, "outputs": [index[o] for o in reference.outputs]}
    return hashlib.sha256(json.dumps(doc, default=str).encode()).hexdigest()[:16]


def select_regions(graph: Graph, max_nodes: int = 8, max_matmuls: int = 2,
                   max_inputs: int = MAX_REGION_INPUTS) -> tuple[list[Region], list[str]]:
    """Regions worth searching, plus notes on what was left as library ops and why."""
    regions, notes = [], []
    for members in _grow(graph, max_nodes, max_matmuls, max_inputs):
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
