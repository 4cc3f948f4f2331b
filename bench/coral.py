"""Coral serving plans: cost against the baselines, goodput when GPUs are scarce, and solve
time of the two-stage decomposition against the joint MILP.

Six models (Llama-3.1-8B/70B, Qwen2.5-7B/14B/32B, Mistral-7B) over the nine GPU types of
specs/hardware at several demand mixes and availability levels, all on the same performance
model. Stage 1 runs once per model (the request shapes stay fixed), every scenario is a stage-2
re-plan. The joint MILP (every fitting configuration, no pruning) runs on small instances for
the losslessness check and once on the full instance for time.

    .venv/bin/python bench/coral.py --out build/bench/coral.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlc.compiler.plan.coral.baselines import homogeneous_baseline, per_model_baseline
from mlc.compiler.plan.coral.catalog import load_catalog, with_availability
from mlc.compiler.plan.coral.perf import DEFAULT_EFFICIENCY, Workload
from mlc.compiler.plan.coral.planner import plan_serve, planning_demand, run_stage1_all
from mlc.compiler.plan.coral.stage1 import run_stage1
from mlc.compiler.plan.coral.stage2 import solve
from mlc.compiler.plan.models import load_model_config

SHAPES = {"llama-3.1-8b": (512, 256), "llama-3.1-70b": (512, 256), "qwen2.5-7b": (1024, 128),
          "qwen2.5-14b": (512, 256), "qwen2.5-32b": (1024, 256), "mistral-7b": (256, 256)}
MIXES = {  # requests/s per model
    "balanced": {"llama-3.1-8b": 10, "llama-3.1-70b": 2, "qwen2.5-7b": 10, "qwen2.5-14b": 6,
                 "qwen2.5-32b": 4, "mistral-7b": 10},
    "small-heavy": {"llama-3.1-8b": 40, "llama-3.1-70b": 1, "qwen2.5-7b": 30,
                    "qwen2.5-14b": 4, "qwen2.5-32b": 2, "mistral-7b": 30},
    "large-heavy": {"llama-3.1-8b": 4, "llama-3.1-70b": 8, "qwen2.5-7b": 4, "qwen2.5-14b": 10,
                    "qwen2.5-32b": 10, "mistral-7b": 4},
}
AVAILABILITY = {
    "ample": {},
    "limited": {"h100": 8, "h200": 4, "a100-80gb": 8, "a100-40gb": 8, "l40s": 8, "l4": 16,
                "a10g": 16, "t4": 16, "v100": 8},
    "scarce": {"h100": 2, "h200": 1, "a100-80gb": 2, "a100-40gb": 2, "l40s": 4, "l4": 8,
               "a10g": 4, "t4": 4, "v100": 2},
}
SMALL_GPUS = ["a100-40gb", "l40s", "l4", "t4"]
SMALL_MODELS = {"llama-3.1-8b": 12.0, "qwen2.5-14b": 5.0, "mistral-7b": 8.0}
SMALL_AVAILABILITY = {"ample": {}, "limited": {"a100-40gb": 2, "l40s": 2, "l4": 6, "t4": 4},
                      "scarce": {"a100-40gb": 1, "l40s": 0, "l4": 3, "t4": 2}}


def workloads(mix: dict[str, float]) -> dict[str, Workload]:
    return {m: Workload(rate, *SHAPES[m]) for m, rate in mix.items()}


def scenarios(console: Console) -> tuple[list[dict], dict]:
    """Every mix x availability as a stage-2 re-plan over one stage-1 run."""
    catalog = load_catalog()
    demand = workloads(MIXES["balanced"])
    models = {m: load_model_config(m) for m in demand}
    start = time.perf_counter()
    results, _ = run_stage1_all(models, demand, catalog, DEFAULT_EFFICIENCY)
    stage1_seconds = time.perf_counter() - start
    rows = []
    for mix_name, mix in MIXES.items():
        for level, available in AVAILABILITY.items():
            pool = with_availability(catalog, available)
            rates = planning_demand(workloads(mix), 0.9)
            coral = solve([c for r in results.values() for c in r.candidates], rates, pool)
            homo = homogeneous_baseline(results, rates, pool)
            melange = per_model_baseline(results, rates, pool)
            row = {"mix": mix_name, "availability": level, "mode": coral.mode,
                   "cost_per_hour": coral.cost_per_hour, "goodput": coral.goodput,
                   "stage2_seconds": coral.seconds,
                   "homogeneous": {"cost_per_hour": homo.cost_per_hour, "goodput": homo.goodput},
                   "per_model": {"cost_per_hour": melange.cost_per_hour,
                                 "goodput": melange.goodput},
                   "mixed_replicas": sum(n for c, n in coral.counts if c.config.mixed),
                   "replicas": sum(n for _, n in coral.counts)}
            rows.append(row)
            console.log(f"{mix_name}/{level}: {coral.mode} ${coral.cost_per_hour:.2f}/h "
                        f"goodput {coral.goodput:.3f}")
    meta = {"stage1_seconds": stage1_seconds,
            "columns": {m: {"enumerated": r.enumerated, "fitting": r.fitting,
                            "kept": len(r.candidates)} for m, r in results.items()},
            "results": results}
    return rows, meta


def end_to_end() -> dict:
    """The CLI's path: full plan (stage 1 + 2, baselines, simulation), then a re-plan."""
    catalog = load_catalog()
    demand = workloads(MIXES["balanced"])
    start = time.perf_counter()
    first = plan_serve(demand, catalog)
    full = time.perf_counter() - start
    scarce = with_availability(catalog, AVAILABILITY["scarce"])
    start = time.perf_counter()
    again = plan_serve(workloads(MIXES["large-heavy"]), scarce, cache=first.stage1)
    replan = time.perf_counter() - start
    return {"full_plan_seconds": full, "replan_seconds": replan,
            "replan_stage1_reused": again.report["stage1_reused"],
            "replan_stage2_seconds": again.report["stage2_seconds"],
            "simulation": first.report["simulation"]}


def joint_check(full_results: dict, joint_limit: float) -> dict:
    """Decomposed vs joint MILP: small instances exactly, the full instance for time."""
    small = []
    catalog = load_catalog(only=SMALL_GPUS)
    start = time.perf_counter()
    results = {m: run_stage1(load_model_config(m), Workload(1.0, *SHAPES[m]), catalog,
                             max_gpus=4) for m in SMALL_MODELS}
    stage1 = time.perf_counter() - start
    for level, available in SMALL_AVAILABILITY.items():
        pool = with_availability(catalog, available)
        two = solve([c for r in results.values() for c in r.candidates], SMALL_MODELS, pool)
        one = solve([c for r in results.values() for c in r.all_fitting], SMALL_MODELS, pool)
        small.append({"availability": level, "mode": two.mode,
                      "decomposed": [round(two.cost_per_hour, 4), round(two.goodput, 6)],
                      "joint": [round(one.cost_per_hour, 4), round(one.goodput, 6)],
                      "equal": abs(two.cost_per_hour - one.cost_per_hour) < 1e-6
                      and abs(two.goodput - one.goodput) < 1e-6,
                      "stage1_seconds": stage1, "stage2_seconds": two.seconds,
                      "joint_seconds": one.seconds,
                      "columns": [sum(len(r.candidates) for r in results.values()),
                                  sum(len(r.all_fitting) for r in results.values())]})
    pool = with_availability(load_catalog(), AVAILABILITY["limited"])
    rates = planning_demand(workloads(MIXES["balanced"]), 0.9)
    two = solve([c for r in full_results.values() for c in r.candidates], rates, pool)
    one = solve([c for r in full_results.values() for c in r.all_fitting], rates, pool,
                time_limit=joint_limit)
    full = {"columns": [sum(len(r.candidates) for r in full_results.values()),
                        sum(len(r.all_fitting) for r in full_results.values())],
            "decomposed": [round(two.cost_per_hour, 4), two.seconds],
            "joint": [round(one.cost_per_hour, 4), one.seconds], "joint_optimal": one.optimal,
            "joint_time_limit_s": joint_limit}
    return {"small": small, "full": full}


def _cost_cell(row: dict, base: dict) -> str:
    """A baseline's $/h, with its ratio to Coral's when both serve all demand."""
    cost = f"{base['cost_per_hour']:.2f}"
    if row["mode"] != "cost" or base["goodput"] < 1 - 1e-9:
        return cost
    return f"{cost} ({base['cost_per_hour'] / row['cost_per_hour']:.2f}x)"


def show(console: Console, rows: list[dict], meta: dict, e2e: dict, joint: dict) -> None:
    table = Table(title="Coral plan vs baselines (6 models x 9 GPU types)")
    for column in ("mix", "GPUs", "mode", "Coral $/h", "goodput", "homog. $/h (x)",
                   "homog. goodput", "per-model $/h (x)", "per-model goodput", "mixed/replicas",
                   "stage 2 s"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["mix"], r["availability"], r["mode"], f"{r['cost_per_hour']:.2f}",
                      f"{r['goodput']:.3f}", _cost_cell(r, r["homogeneous"]),
                      f"{r['homogeneous']['goodput']:.3f}", _cost_cell(r, r["per_model"]),
                      f"{r['per_model']['goodput']:.3f}",
                      f"{r['mixed_replicas']}/{r['replicas']}", f"{r['stage2_seconds']:.3f}")
    console.print(table)
    small = Table(title="Decomposed vs joint MILP (3 models x 4 GPU types, <= 4 GPUs/replica)")
    for column in ("availability", "mode", "decomposed ($/h, goodput)", "joint", "equal",
                   "columns (kept/all)", "stage 1 s", "stage 2 s", "joint s"):
        small.add_column(column)
    for s in joint["small"]:
        small.add_row(s["availability"], s["mode"], str(s["decomposed"]),
                      str(s["joint"]), str(s["equal"]), f"{s['columns'][0]}/{s['columns'][1]}",
                      f"{s['stage1_seconds']:.2f}", f"{s['stage2_seconds']:.3f}",
                      f"{s['joint_seconds']:.3f}")
    console.print(small)
    full = joint["full"]
    console.print(
        f"stage 1 (6 models, all 9 GPU types): {meta['stage1_seconds']:.1f} s; full instance "
        f"(balanced, limited): decomposed {full['columns'][0]} columns ${full['decomposed'][0]}"
        f"/h in {full['decomposed'][1]:.2f} s, joint {full['columns'][1]} columns "
        f"${full['joint'][0]}/h in {full['joint'][1]:.1f} s (optimal: {full['joint_optimal']}, "
        f"limit {full['joint_time_limit_s']:.0f} s)")
    console.print(f"end to end: full plan {e2e['full_plan_seconds']:.1f} s (target <= 30 s), "
                  f"re-plan {e2e['replan_seconds']:.2f} s (stage 2 "
                  f"{e2e['replan_stage2_seconds']:.3f} s; target <= 2 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench/coral.json")
    parser.add_argument("--joint-limit", type=float, default=60.0,
                        help="Time limit (s) of the joint MILP on the full instance.")
    args = parser.parse_args()
    console = Console(stderr=True)
    rows, meta = scenarios(console)
    e2e = end_to_end()
    joint = joint_check(meta.pop("results"), args.joint_limit)
    show(Console(width=170), rows, meta, e2e, joint)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"scenarios": rows, "stage1": meta, "end_to_end": e2e,
                               "joint": joint}, indent=1, default=str) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
