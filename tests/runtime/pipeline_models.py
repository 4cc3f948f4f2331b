"""Shared by the pipeline tests: a small multi-branch graph and hand-written plans for it."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir.serialize import graph_to_json, save_graph

BATCH, WIDTH = 8, 16


def branchy_graph(seed: int = 0):
    """x -> 3 x (MatMul + Relu) -> Concat -> MatMul head."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("branchy")
    x = b.input("x", (BATCH, WIDTH))
    branches = []
    for i in range(3):
        w = b.weight(f"w{i}", (rng.standard_normal((WIDTH, WIDTH)) / 4).astype(np.float32))
        branches.append(b.op("Relu", b.op("MatMul", x, w, name=f"mm{i}"), name=f"relu{i}"))
    cat = b.op("Concat", *branches, axis=1, name="cat")
    w_head = b.weight("w_head", (rng.standard_normal((3 * WIDTH, 4)) / 7).astype(np.float32))
    return b.build(b.op("MatMul", cat, w_head, name="head"))


DAG_STAGES = [["mm0", "relu0"], ["mm1", "relu1"], ["mm2", "relu2"], ["cat", "head"]]
DAG_EDGES = [[0, 3], [1, 3], [2, 3]]
CHAIN_STAGES = [["mm0", "relu0", "mm1", "relu1"], ["mm2", "relu2", "cat", "head"]]
CHAIN_EDGES = [[0, 1]]


def write_artifact(directory, graph, op_lists, edges, micro_batch=2, order=None, degrees=None,
                   **changes):
    """graph.json + plan.json by hand, in the planner's format; `degrees`: devices per stage."""
    directory.mkdir(parents=True, exist_ok=True)
    save_graph(graph, directory)
    digest = hashlib.sha256(json.dumps(graph_to_json(graph), sort_keys=True).encode())
    n = BATCH // micro_batch
    degrees = degrees or [1] * len(op_lists)
    starts = np.cumsum([0, *degrees])
    ranks = [list(range(starts[i], starts[i + 1])) for i in range(len(op_lists))]
    plan = {"format_version": 1, "kind": "partition-plan", "planner": "graph_pipeline",
            "model": "test", "graph_hash": digest.hexdigest(), "batch": BATCH,
            "micro_batch": micro_batch, "num_micro_batches": n, "devices": sum(degrees),
            "stages": [{"id": i, "ops": ops, "devices": ranks[i], "micro_batch": micro_batch,
                        "in_flight": 1} for i, ops in enumerate(op_lists)],
            "edges": edges,
            "schedule": {"kind": "1f1b-dag", "order": order or {
                str(i): [f"F{k}" for k in range(n)] + [f"B{k}" for k in range(n)]
                for i in range(len(op_lists))}}}
    plan.update(changes)
    (directory / "plan.json").write_text(json.dumps(plan))
    return directory
