"""The superoptimizer's search over every workload at its paper shapes: search seconds, states
enumerated / pruned, programs complete / verified, and the best estimated time against the
unfused baseline, the hand-written µGraph and Mirage's best imported candidate. Plus an
ablation: RMSNorm+MatMul enumerated with pruning off at small op limits.

    .venv/bin/python bench/search.py --budget 60 --out build/bench/search.json
    .venv/bin/python bench/search.py --workloads rmsnorm_matmul,lora --budget 30

Every time is a roofline estimate on the GPU spec (no GPU is used).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

from mlc.compiler.superopt.cost import estimate, load_gpu
from mlc.compiler.superopt.search import Enumerator, search
from mlc.specs.workloads import get_workload

WORKLOADS = ("rmsnorm_matmul", "gated_mlp", "lora", "gqa", "qknorm", "ntrans",
             "prism_rms_norm", "prism_rmsnorm_mlp", "prism_swiglu", "prism_attention",
             "prism_qk_norm_attention")
# The bar: the search must match the hand-written µGraph on these.
MUST_MATCH_HAND = ("rmsnorm_matmul", "gated_mlp", "lora", "gqa")
ABLATION = ("rmsnorm_matmul", (3, 4, 5))  # workload, max block ops


def _mugraph_cost():
    """bench/mugraph_cost.py as a module (bench/ is not a package)."""
    path = Path(__file__).resolve().parent / "mugraph_cost.py"
    spec = importlib.util.spec_from_file_location("mugraph_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_time(name, gpu, notes):
    from mlc.compiler.superopt.mugraph.fixtures import list_fixtures, load_fixture
    if name not in list_fixtures():
        notes.add(f"hand-written {name}: no fixture")
        return None
    return estimate(load_fixture(name), gpu).time_us


def mirage_time(name, gpu, notes):
    cost = _mugraph_cost()
    if name not in cost.MIRAGE_FILES:
        notes.add(f"mirage {name}: no checkpoint (Prism workload)")
        return None
    found = cost.mirage_best(name, gpu, cost.DEFAULT_MIRAGE_DIR, notes)
    return None if found is None else found["time_us"]


def describe(graph) -> str:
    """One line per µGraph: each kernel as op, or block[grid/loop: tile ops]."""
    parts = []
    for op in graph.ops:
        if op.block is None:
            parts.append(op.op)
            continue
        block = op.block
        grid = "x".join(str(g) for g in block.grid if g > 1) or "1"
        parts.append(f"block[{grid}/{block.forloop_range}: "
                     f"{' '.join(o.op for o in block.ops)}]")
    return "; ".join(parts)


def run_workload(name, args, gpu, notes) -> dict:
    graph = get_workload(name)
    result = search(graph, gpu=gpu, budget_s=args.budget, max_kernel_ops=args.max_kernel_ops,
                    max_block_ops=args.max_block_ops, workers=args.workers, seed=args.seed)
    hand, mirage = hand_time(name, gpu, notes), mirage_time(name, gpu, notes)
    row = {"workload": name, "search_seconds": round(result.search_seconds, 2),
           "enumerated": result.enumerated, "pruned": result.pruned,
           "complete": result.complete, "verified": result.verified,
           "budget_exhausted": result.budget_exhausted,
           "best_us": result.best_est_time_us, "baseline_us": result.baseline_est_time_us,
           "hand_us": hand, "mirage_us": mirage, "kernels": len(result.best.ops),
           "best": describe(result.best),
           "candidates_us": [c.est_time_us for c in result.candidates]}
    row["matches_hand"] = None if hand is None else result.best_est_time_us <= hand * 1.005
    return row


def ablation(gpu, budget: float) -> list[dict]:
    """States visited and seconds with pruning on and off (enumeration only, no verify)."""
    from mlc.compiler.superopt.prune.space import TargetSpace
    from mlc.compiler.superopt.prune.terms import ir_output_terms

    name, limits = ABLATION
    graph = get_workload(name)
    space = TargetSpace(ir_output_terms(graph))
    rows = []
    for max_block_ops in limits:
        for prune in (True, False):
            start = time.monotonic()
            enumerator = Enumerator(graph, gpu, space, max_kernel_ops=1,
                                    max_block_ops=max_block_ops, prune=prune,
                                    deadline=start + budget)
            finished = True
            try:
                complete = sum(1 for _ in enumerator.run(enumerator.top_choices(), 1))
            except Exception as err:  # OutOfTime
                if type(err).__name__ != "OutOfTime":
                    raise
                finished, complete = False, enumerator.counts.complete
            rows.append({"workload": name, "max_block_ops": max_block_ops, "prune": prune,
                         "visited": enumerator.counts.visited,
                         "pruned": enumerator.counts.pruned, "complete": complete,
                         "seconds": round(time.monotonic() - start, 2), "finished": finished})
    return rows


def _us(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_tables(rows, ablation_rows, gpu, args):
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"search on {gpu.full_name}: budget {args.budget:g} s, {args.workers} "
                        f"workers, ≤{args.max_block_ops} block ops (estimated µs)")
    for column in ("workload", "s", "states", "pruned", "complete", "verified", "best",
                   "baseline", "hand", "mirage", "vs base", "≤ hand", "best µGraph"):
        table.add_column(column, justify="left" if column in ("workload", "best µGraph")
                         else "right")
    for r in rows:
        table.add_row(r["workload"], f"{r['search_seconds']:.1f}" +
                      ("*" if r["budget_exhausted"] else ""), str(r["enumerated"]),
                      str(r["pruned"]), str(r["complete"]), str(r["verified"]),
                      _us(r["best_us"]), _us(r["baseline_us"]), _us(r["hand_us"]),
                      _us(r["mirage_us"]), f"{r['baseline_us'] / r['best_us']:.2f}x",
                      {None: "-", True: "yes", False: "no"}[r["matches_hand"]], r["best"])
    console = Console(width=200)
    console.print(table)
    console.print("* budget exhausted")
    if ablation_rows:
        abl = Table(title=f"ablation: {ABLATION[0]} enumeration, pruning on vs off")
        for column in ("block ops", "prune", "states", "pruned", "complete", "s", "finished"):
            abl.add_column(column, justify="right")
        for r in ablation_rows:
            abl.add_row(str(r["max_block_ops"]), "on" if r["prune"] else "off",
                        str(r["visited"]), str(r["pruned"]), str(r["complete"]),
                        f"{r['seconds']:.2f}", "yes" if r["finished"] else "no (budget)")
        console.print(abl)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="h100")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per workload")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-kernel-ops", type=int, default=1)
    parser.add_argument("--max-block-ops", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("build/bench/search.json"))
    args = parser.parse_args()
    gpu = load_gpu(args.gpu)
    notes: set[str] = set()
    rows = []
    for name in args.workloads.split(","):
        rows.append(run_workload(name.strip(), args, gpu, notes))
        print(f"{name}: {rows[-1]['search_seconds']} s, best {rows[-1]['best_us']:.1f} µs",
              flush=True)
    ablation_rows = [] if args.no_ablation else ablation(gpu, args.budget)
    print_tables(rows, ablation_rows, gpu, args)
    for note in sorted(notes):
        print(f"note: {note}")
    doc = {"benchmark": "search", "source": "estimated", "gpu": gpu.name,
           "budget_s": args.budget, "workers": args.workers,
           "max_kernel_ops": args.max_kernel_ops, "max_block_ops": args.max_block_ops,
           "rows": rows, "ablation": ablation_rows, "notes": sorted(notes)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
