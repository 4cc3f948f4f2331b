"""Symbolic (Prism) against concrete (Mirage) search on Prism's five workloads over their shape
sweeps: total optimization seconds of each, the best estimated time per shape, which check
verified it, and the formal proofs behind the symbolic winners.

Concrete: one search per shape (enumerate, size, verify). Symbolic: one sGraph search per
workload (its checkpoint reused for every shape of the sweep), then one instantiation per
shape (bind the variables, rank by the cost model, prove or verify the winners). Both get
the same budget per search and no disk cache, in one run on this machine.

    .venv/bin/python bench/symbolic.py --budget 30 --out build/bench/symbolic.json
    .venv/bin/python bench/symbolic.py --workloads prism_rms_norm --budget 10
    .venv/bin/python bench/symbolic.py --replay build/bench/symbolic.json   # tables again

Every time is a roofline estimate on the GPU spec (no GPU is used).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlc.compiler.superopt.cost import load_gpu
from mlc.compiler.superopt.search import search
from mlc.compiler.superopt.symbolic.driver import search_symbolic
from mlc.compiler.superopt.verify.formal import FACTS, REWRITES
from mlc.specs.workloads import get_workload, sweep_workloads

WORKLOADS = ("prism_rms_norm", "prism_rmsnorm_mlp", "prism_swiglu", "prism_attention",
             "prism_qk_norm_attention")
TARGET_SPEEDUP = 3.4  # Prism's reported end-to-end optimization-time reduction
SAME = 1.005  # "equal" kernels: within 0.5% of the estimate


def run_workload(name: str, args, gpu) -> list[dict]:
    rows, checkpoints = [], {}
    for spec in sweep_workloads(name):
        reference = get_workload(spec)
        concrete = search(reference, gpu=gpu, budget_s=args.budget, workers=args.workers,
                          seed=args.seed)
        symbolic = search_symbolic(reference, gpu=gpu, budget_s=args.budget,
                                   workers=args.workers, seed=args.seed,
                                   checkpoints=checkpoints)
        checkpoint = next(iter(checkpoints.values()))
        rows.append({
            "workload": name, "shape": spec.partition(":")[2] or "default",
            "baseline_us": concrete.baseline_est_time_us,
            "concrete_s": concrete.search_seconds, "concrete_us": concrete.best_est_time_us,
            "concrete_verification": concrete.verification,
            "concrete_exhausted": concrete.budget_exhausted,
            "symbolic_s": symbolic.search_seconds, "symbolic_us": symbolic.best_est_time_us,
            "symbolic_verification": symbolic.verification,
            "symbolic_searched": not symbolic.cached,
            "symbolic_exhausted": checkpoint.budget_exhausted,
            "sgraphs": len(checkpoint.sgraphs),
            "symbolic_search_s": checkpoint.search_seconds,
            "proofs": dict(checkpoint.proofs),
        })
        r = rows[-1]
        print(f"{name} {r['shape']}: concrete {r['concrete_s']:.1f} s {r['concrete_us']:.2f} µs"
              f" | symbolic {r['symbolic_s']:.1f} s {r['symbolic_us']:.2f} µs "
              f"({r['symbolic_verification']})", flush=True)
    return rows


def summarize(rows: list[dict], budget: float) -> list[dict]:
    """Per workload: totals over its sweep, and the concrete total with every search capped
    at the budget (a lower bound for a concrete search that never overran it)."""
    summary = []
    for name in dict.fromkeys(r["workload"] for r in rows):
        mine = [r for r in rows if r["workload"] == name]
        concrete = sum(r["concrete_s"] for r in mine)
        symbolic = sum(r["symbolic_s"] for r in mine)
        search_s = next((r["symbolic_search_s"] for r in mine if r["symbolic_searched"]), 0.0)
        proofs = mine[-1]["proofs"]
        capped = sum(min(r["concrete_s"], budget) for r in mine)
        summary.append({
            "workload": name, "shapes": len(mine), "concrete_s": concrete,
            "concrete_capped_s": capped, "speedup_vs_capped": capped / symbolic
            if symbolic else None,
            "symbolic_s": symbolic, "symbolic_search_s": search_s,
            "instantiation_s": symbolic - search_s,
            "speedup": concrete / symbolic if symbolic else None,
            "equal_or_better": sum(r["symbolic_us"] <= r["concrete_us"] * SAME for r in mine),
            "strictly_better": sum(r["symbolic_us"] * SAME < r["concrete_us"] for r in mine),
            "sgraphs": mine[-1]["sgraphs"],
            "proven": sum(p["proven"] for p in proofs.values()), "proofs": len(proofs),
            "max_proof_s": max((p["seconds"] for p in proofs.values() if p["proven"]),
                               default=0.0)})
    return summary


def print_tables(rows, summary, gpu, args) -> None:
    console = Console(width=200)
    table = Table(title=f"per shape on {gpu.full_name} (estimated µs), budget {args.budget:g} s "
                        f"per search, {args.workers} workers")
    for column in ("workload", "shape", "baseline", "concrete s", "concrete µs", "verified",
                   "symbolic s", "symbolic µs", "verified ", "sym ≤ conc"):
        table.add_column(column, justify="left" if column in ("workload", "shape") else "right")
    for r in rows:
        table.add_row(r["workload"], r["shape"], f"{r['baseline_us']:.2f}",
                      f"{r['concrete_s']:.2f}" + ("*" if r["concrete_exhausted"] else ""),
                      f"{r['concrete_us']:.2f}", r["concrete_verification"],
                      f"{r['symbolic_s']:.2f}" + ("†" if r["symbolic_searched"] else ""),
                      f"{r['symbolic_us']:.2f}", r["symbolic_verification"],
                      "yes" if r["symbolic_us"] <= r["concrete_us"] * SAME else "no")
    console.print(table)
    console.print("* budget exhausted   † includes the symbolic search itself")
    total = Table(title="total optimization time over the sweep")
    for column in ("workload", "shapes", "concrete s", "capped s", "symbolic s",
                   "of it search s", "instantiate s", "speedup", "vs capped", "≤ concrete",
                   "< concrete", "sGraphs", "proven / tried", "max proof s"):
        total.add_column(column, justify="left" if column == "workload" else "right")
    for s in summary:
        total.add_row(s["workload"], str(s["shapes"]), f"{s['concrete_s']:.1f}",
                      f"{s['concrete_capped_s']:.1f}", f"{s['symbolic_s']:.1f}",
                      f"{s['symbolic_search_s']:.1f}", f"{s['instantiation_s']:.1f}",
                      f"{s['speedup']:.2f}x", f"{s['speedup_vs_capped']:.2f}x",
                      f"{s['equal_or_better']}/{s['shapes']}",
                      f"{s['strictly_better']}/{s['shapes']}", str(s["sgraphs"]),
                      f"{s['proven']}/{s['proofs']}", f"{s['max_proof_s']:.2f}")
    console.print(total)
    concrete = sum(s["concrete_s"] for s in summary)
    capped = sum(s["concrete_capped_s"] for s in summary)
    symbolic = sum(s["symbolic_s"] for s in summary)
    better = sum(s["equal_or_better"] for s in summary)
    shapes = sum(s["shapes"] for s in summary)
    console.print(f"all workloads: concrete {concrete:.1f} s, symbolic {symbolic:.1f} s: "
                  f"{concrete / symbolic:.2f}x less optimization time, {capped / symbolic:.2f}x "
                  f"against concrete capped at the budget (target ≥ {TARGET_SPEEDUP}x); "
                  f"symbolic kernels equal or better on {better}/{shapes} "
                  f"shapes; formal rule set: {len(REWRITES)} rewrites, {len(FACTS)} facts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="h100")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per search")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("build/bench/symbolic.json"))
    parser.add_argument("--replay", type=Path, metavar="JSON",
                        help="print the tables of an earlier run's JSON instead of running")
    args = parser.parse_args()
    gpu = load_gpu(args.gpu)
    if args.replay:
        doc = json.loads(args.replay.read_text())
        args.budget, args.workers = doc["budget_s"], doc["workers"]
        print_tables(doc["rows"], summarize(doc["rows"], args.budget), gpu, args)
        return
    start = time.monotonic()
    rows = []
    for name in args.workloads.split(","):
        rows += run_workload(name.strip(), args, gpu)
    summary = summarize(rows, args.budget)
    print_tables(rows, summary, gpu, args)
    doc = {"benchmark": "symbolic", "source": "estimated", "gpu": gpu.name,
           "budget_s": args.budget, "workers": args.workers, "rewrites": len(REWRITES),
           "facts": len(FACTS), "target_speedup": TARGET_SPEEDUP, "rows": rows,
           "summary": summary, "bench_seconds": time.monotonic() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
