"""Measured step time of partition plans run by `mlc train` (local processes, gloo on CPU).

Give plan directories (graph.json + plan.json, e.g. from `mlc partition`), or `--demo` to build
a small multi-branch model (3 branches of MatMul+Relu layers -> Concat -> MatMul head) with two
hand-written plans: a graph pipeline (3 branch stages in parallel + head, 4 processes) and a
sequential pipeline (2 stages). Each runs `--steps` steps with `--check` on the first.

    .venv/bin/python bench/partition_run.py --demo --steps 20
    .venv/bin/python bench/partition_run.py build/mmt-plan build/mmt-seq --steps 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir.serialize import graph_to_json, save_graph
from mlc.runtime.pipeline import TrainConfig, default_order, train


def demo_graph(batch: int, width: int, depth: int, branches: int = 3, seed: int = 0):
    """x -> `branches` stacks of `depth` MatMul+Relu layers -> Concat -> MatMul head."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("multibranch")
    x = b.input("x", (batch, width))
    heads = []
    for branch in range(branches):
        h = x
        for layer in range(depth):
            scaled = rng.standard_normal((width, width)) / np.sqrt(width)
            w = b.weight(f"b{branch}_w{layer}", scaled.astype(np.float32))
            h = b.op("Relu", b.op("MatMul", h, w, name=f"b{branch}_mm{layer}"),
                     name=f"b{branch}_relu{layer}")
        heads.append(h)
    cat = b.op("Concat", *heads, axis=1, name="concat")
    scaled = rng.standard_normal((branches * width, width)) / np.sqrt(branches * width)
    w_head = b.weight("head_w", scaled.astype(np.float32))
    return b.build(b.op("MatMul", cat, w_head, name="head"))


def write_plan(directory: Path, graph, planner: str, stage_ops: list[list[str]],
               edges: list[list[int]], micro_batch: int) -> None:
    """graph.json + weights + plan.json with one device per stage and a 1F1B-DAG schedule."""
    directory.mkdir(parents=True, exist_ok=True)
    save_graph(graph, directory)
    batch = graph.inputs["x"].shape[0]
    succs = {s: [t for a, t in edges if a == s] for s in range(len(stage_ops))}
    depth = {}
    for s in reversed(range(len(stage_ops))):  # in-flight: longest path to the sink, in stages
        depth[s] = 1 + max((depth[t] for t in succs[s]), default=0)
    stages = [{"id": s, "ops": ops, "devices": [s], "micro_batch": micro_batch,
               "in_flight": depth[s]} for s, ops in enumerate(stage_ops)]
    order = {str(s): default_order(batch // micro_batch, depth[s]) for s in depth}
    doc = {"format_version": 1, "kind": "partition-plan", "planner": planner, "model": "demo",
           "graph_hash": hashlib.sha256(json.dumps(graph_to_json(graph), sort_keys=True)
                                        .encode()).hexdigest(),
           "batch": batch, "micro_batch": micro_batch, "num_micro_batches": batch // micro_batch,
           "devices": len(stage_ops), "stages": stages, "edges": edges,
           "schedule": {"kind": "1f1b-dag", "order": order}}
    (directory / "plan.json").write_text(json.dumps(doc, indent=1) + "\n")


def build_demo(out: Path, batch: int, width: int, depth: int, micro_batch: int) -> list[Path]:
    """The demo model with a graph-pipeline plan (4 stages) and a sequential one (2 stages)."""
    graph = demo_graph(batch, width, depth)
    branch_ops = [[n.name for n in graph.nodes if n.name.startswith(f"b{i}_")] for i in range(3)]
    head_ops = ["concat", "head"]
    dag, seq = out / "graph_pipeline", out / "sequential_pipeline"
    write_plan(dag, graph, "graph_pipeline", [*branch_ops, head_ops],
               [[0, 3], [1, 3], [2, 3]], micro_batch)
    write_plan(seq, graph, "sequential_pipeline",
               [branch_ops[0] + branch_ops[1], branch_ops[2] + head_ops], [[0, 1]], micro_batch)
    return [dag, seq]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans", nargs="*", type=Path, help="plan directories")
    parser.add_argument("--demo", action="store_true", help="build and run the demo plans")
    parser.add_argument("--demo-dir", type=Path, default=Path("build/bench/partition_demo"))
    parser.add_argument("--batch", type=int, default=64, help="demo batch")
    parser.add_argument("--width", type=int, default=256, help="demo layer width")
    parser.add_argument("--depth", type=int, default=4, help="demo layers per branch")
    parser.add_argument("--micro-batch", type=int, default=16, help="demo micro-batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("build/bench/partition_run.json"))
    args = parser.parse_args()
    plans = list(args.plans)
    if args.demo:
        plans += build_demo(args.demo_dir, args.batch, args.width, args.depth, args.micro_batch)
    if not plans:
        parser.error("give plan directories or --demo")
    rows = []
    for directory in plans:
        report = train(TrainConfig(str(directory), steps=args.steps, check=True))
        rows.append({key: report[key] for key in ("directory", "planner", "stages", "processes",
                                                   "batch", "micro_batch",
                                                   "median_step_seconds", "samples_per_second")}
                    | {"check_ok": report["check"]["ok"], "final_loss": report["losses"][-1],
                       "max_grad_rel_error": report["check"]["max_grad_rel_error"]})
    table = Table(title=f"partition plans, measured ({args.steps} steps, median after the first)")
    for column in ("plan", "planner", "stages", "procs", "batch/micro", "step ms", "samples/s",
                   "check"):
        table.add_column(column)
    for row in rows:
        table.add_row(Path(row["directory"]).name, row["planner"], str(row["stages"]),
                      str(row["processes"]), f"{row['batch']}/{row['micro_batch']}",
                      f"{row['median_step_seconds'] * 1e3:.2f}",
                      f"{row['samples_per_second']:.0f}",
                      "PASS" if row["check_ok"] else "FAIL")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "runs": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
