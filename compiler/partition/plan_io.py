"""plan.json (the contract with `mlc train`), its checks, and the report documents."""

from __future__ import annotations

import hashlib
import json

from mlc.compiler.ir import Graph
from mlc.compiler.ir.serialize import graph_to_json

PLAN_FORMAT_VERSION = 1


def graph_hash(graph: Graph) -> str:
    """sha256 of the graph's JSON document with sorted keys (what plan.json records)."""
    return hashlib.sha256(json.dumps(graph_to_json(graph), sort_keys=True).encode()).hexdigest()


def plan_document(graph: Graph, source: str, planner: str, batch: int, micro_batch: int,
                  devices: int, stages: list[tuple[str, ...]], degrees: list[int],
                  edges: list[tuple[int, int]], in_flight: list[int],
                  orders: list[list[str]]) -> dict:
    """The plan.json document; stage ids must already be topologically ordered."""
    ranks, docs = iter(range(devices)), []
    for sid, (ops, degree) in enumerate(zip(stages, degrees)):
        docs.append({"id": sid, "ops": list(ops), "devices": [next(ranks) for _ in range(degree)],
                     "micro_batch": micro_batch, "in_flight": in_flight[sid]})
    return {"format_version": PLAN_FORMAT_VERSION, "kind": "partition-plan", "planner": planner,
            "model": source, "graph_hash": graph_hash(graph), "batch": batch,
            "micro_batch": micro_batch, "num_micro_batches": batch // micro_batch,
            "devices": devices, "stages": docs, "edges": [list(e) for e in edges],
            "schedule": {"kind": "1f1b-dag",
                         "order": {str(sid): order for sid, order in enumerate(orders)}}}


def check_plan(plan: dict, graph: Graph) -> list[str]:
    """Problems with a plan against its graph (empty when valid): ops partitioned, devices
    partitioned, ids topological, edges matching op edges, stages convex."""
    from .schedule import stage_edges
    from .sp import op_dag

    problems = []
    order, succ, _ = op_dag(graph)
    stages = [tuple(s["ops"]) for s in plan["stages"]]
    seen = [op for ops in stages for op in ops]
    if sorted(seen) != sorted(order):
        problems.append("stages do not partition the graph's ops")
    ranks = sorted(r for s in plan["stages"] for r in s["devices"])
    if ranks != list(range(plan["devices"])):
        problems.append(f"stage devices {ranks} are not ranks 0..{plan['devices'] - 1}")
    if [s["id"] for s in plan["stages"]] != list(range(len(stages))):
        problems.append("stage ids are not 0..n-1 in order")
    if not problems:
        edges = stage_edges(stages, succ)
        if any(a >= b for a, b in edges):
            problems.append("stage ids are not topologically ordered (or a stage is not "
                            "convex)")
        if sorted(map(tuple, plan["edges"])) != edges:
            problems.append("edges do not match the op graph")
    if plan["graph_hash"] != graph_hash(graph):
        problems.append("graph_hash does not match the graph")
    return problems


def report_markdown(report: dict) -> str:
    """report.md: both planners side by side, then each plan's stages."""
    lines = [f"# Partition of {report['model']}", "",
             f"{report['devices']} devices x {report['device_memory_bytes'] / 1e9:.1f} GB "
             f"({report['gpu']}), batch {report['batch']}", "",
             "| planner | stages | micro-batch | throughput (samples/s) | peak memory (GB) "
             "| search (s) |", "|---|---|---|---|---|---|"]
    for name in ("graph_pipeline", "sequential_pipeline"):
        r = report[name]
        lines.append(f"| {name} | {r['num_stages']} | {r['micro_batch']} | "
                     f"{r['throughput']:.1f} | {r['peak_memory_bytes'] / 1e9:.2f} | "
                     f"{r['search_seconds']:.2f} |")
    lines += ["", f"Speedup of the graph pipeline: {report['speedup']:.2f}x", ""]
    for name in ("graph_pipeline", "sequential_pipeline"):
        lines += [f"## {name}", "", "| stage | ops | devices | in-flight | first .. last op |",
                  "|---|---|---|---|---|"]
        for s in report[name]["stages"]:
            lines.append(f"| {s['id']} | {s['num_ops']} | {s['devices']} | {s['in_flight']} | "
                         f"{s['first']} .. {s['last']} |")
        lines.append("")
    return "\n".join(lines)
