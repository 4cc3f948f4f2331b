"""The Coral pipeline: stage 1 per model (or its cache), stage 2, baselines, simulation, and
the plan and report documents. `plan_serve` is the one entry point the CLI calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mlc.compiler.errors import MlcError

from ..models import ModelConfig, load_model_config
from .baselines import homogeneous_baseline, per_model_baseline
from .cache import cached_results, recheck, stage1_document
from .catalog import GpuType
from .inputs import demand_document
from .launch import node_layout, vllm_command
from .perf import DEFAULT_EFFICIENCY, Efficiency, Workload
from .simulate import simulate_model
from .stage1 import MAX_GPUS, Stage1Result, run_stage1
from .stage2 import Allocation, solve

TARGET_UTILIZATION = 0.9  # plan capacity so that demand is at most 90% of it


@dataclass
class ServePlan:
    """Everything a `plan serve` run produces; the CLI writes the three documents."""

    plan: dict
    report: dict
    stage1: dict
    allocation: Allocation
    baselines: dict[str, Allocation] = field(default_factory=dict)


def run_stage1_all(models: dict[str, ModelConfig], demand: dict[str, Workload],
                   catalog: dict[str, GpuType], eff: Efficiency, cache: dict | None = None,
                   mixed: bool = True, notes: list[str] | None = None
                   ) -> tuple[dict[str, Stage1Result], list[str]]:
    """Stage 1 for every model, reusing cached results whose shape still matches and that
    pass `recheck`; a cached result that fails it is rerun, with a note in `notes`."""
    cached = cached_results(cache, catalog, eff, notes)
    results, reused = {}, []
    for name, model in models.items():
        hit = cached.get(name)
        if hit is not None and hit.shape_key == demand[name].shape_key:
            problem = recheck(hit, model, demand[name], catalog, eff)
            if not problem:
                results[name] = hit
                reused.append(name)
                continue
            if notes is not None:
                notes.append(f"cached stage 1 of {name} was not reused: {problem}; "
                             "stage 1 was rerun")
        results[name] = run_stage1(model, demand[name], catalog, eff, mixed=mixed)
    return results, reused


def check_servable(results: dict[str, Stage1Result], demand: dict[str, Workload]) -> None:
    """MlcError naming each model no configuration can serve, and why, per GPU type."""
    problems = []
    for name, result in results.items():
        if result.candidates or demand[name].requests_per_s <= 0:
            continue
        w = demand[name]
        why = "; ".join(f"{gpu}: {reason}" for gpu, reason in sorted(result.failures.items()))
        problems.append(f"model {name} ({w.prompt_tokens} prompt + {w.output_tokens} output "
                        f"tokens, {w.tpot_slo_s * 1e3:.0f} ms per token) fits no configuration "
                        f"of up to {MAX_GPUS} GPUs: {why}")
    if problems:
        raise MlcError(" | ".join(problems) + " (relax tpot_ms/ttft_ms or shorten requests)")


def planning_demand(demand: dict[str, Workload], utilization: float) -> dict[str, float]:
    return {name: w.requests_per_s / utilization for name, w in demand.items()}


def plan_serve(demand: dict[str, Workload], catalog: dict[str, GpuType],
               eff: Efficiency = DEFAULT_EFFICIENCY, cache: dict | None = None,
               utilization: float = TARGET_UTILIZATION, simulate: bool = True,
               seed: int = 0, overrides: dict | None = None) -> ServePlan:
    """Plan every model in `demand` over `catalog` at least cost (or most goodput)."""
    models = {name: load_model_config(name) for name in demand}
    start = time.perf_counter()
    cache_notes: list[str] = []
    results, reused = run_stage1_all(models, demand, catalog, eff, cache, notes=cache_notes)
    stage1_seconds = time.perf_counter() - start
    check_servable(results, demand)
    rates = planning_demand(demand, utilization)
    weights = {name: w.weight for name, w in demand.items()}
    columns = [c for r in results.values() for c in r.candidates]
    allocation = solve(columns, rates, catalog, weights)
    if allocation.goodput <= 0 and any(rate > 0 for rate in rates.values()):
        raise MlcError("the available GPUs can serve none of the demand: "
                       + ", ".join(f"{g} {gpu.available}" for g, gpu in sorted(catalog.items()))
                       + " (raise `available` in the --gpus file)")
    baselines = {"homogeneous": homogeneous_baseline(results, rates, catalog, weights),
                 "per_model": per_model_baseline(results, rates, catalog, weights)}
    sims = {}
    if simulate:
        for index, name in enumerate(demand):
            replicas = [(c.perf.throughput, c.perf.batch) for c, n in allocation.counts
                        if c.model == name for _ in range(n)]
            sims[name] = simulate_model(replicas, demand[name].requests_per_s,
                                        demand[name].ttft_slo_s, max_arrivals=10000,
                                        seed=seed + index)
    notes = cache_notes + _notes(allocation, rates, utilization)
    plan = plan_document(models, demand, allocation, catalog, utilization, notes, overrides)
    report = report_document(allocation, baselines, results, reused, stage1_seconds, sims,
                             notes, utilization)
    return ServePlan(plan, report, stage1_document(results, catalog, eff), allocation,
                     baselines)


def _notes(allocation: Allocation, rates: dict[str, float], utilization: float) -> list[str]:
    if allocation.mode == "cost":
        return []
    short = [f"{m} serves {allocation.served[m] * utilization:.2f} of "
             f"{rates[m] * utilization:.2f} req/s" for m in rates
             if allocation.served[m] < rates[m] - 1e-9]
    return [f"demand cannot be met with the available GPUs: planned for the most goodput "
            f"({allocation.goodput:.1%} of requests), then least cost; short: "
            + "; ".join(short)]


def plan_document(models, demand, allocation, catalog, utilization, notes, overrides) -> dict:
    """plan.json: per model its replicas (GPU types, TP/PP layout, throughput, cost, vLLM)."""
    per_model = {}
    port = 8000
    for name, model in models.items():
        replicas = []
        for column, count in allocation.counts:
            if column.model != name:
                continue
            config, perf = column.config, column.perf
            replicas.append({
                "config": config.key, "count": count, "gpus": config.gpu_counts,
                "tp": config.stages[0].tp, "pp": config.pp, "mixed": config.mixed,
                "stages": [{"gpu": s.gpu, "tp": s.tp, "layers": s.layers}
                           for s in config.stages],
                "nodes": node_layout(config),
                "throughput_requests_per_s": round(perf.throughput, 4),
                "batch": perf.batch, "tpot_ms": round(perf.tpot_s * 1e3, 2),
                "ttft_s": round(perf.ttft_s, 3),
                "cost_per_hour": round(column.cost(catalog), 4),
                "launch": vllm_command(model, config, demand[name], perf.batch, catalog, port)})
            port += 1
        capacity = sum(r["throughput_requests_per_s"] * r["count"] for r in replicas)
        per_model[name] = {
            "demand_requests_per_s": demand[name].requests_per_s,
            "capacity_requests_per_s": round(capacity, 4),
            "served_requests_per_s": round(min(demand[name].requests_per_s,
                                               capacity * utilization), 4),
            "cost_per_hour": round(sum(r["cost_per_hour"] * r["count"] for r in replicas), 4),
            "replicas": replicas}
    used: dict[str, int] = {}
    for column, count in allocation.counts:
        for gpu, n in column.gpu_counts.items():
            used[gpu] = used.get(gpu, 0) + n * count
    return {"format_version": 1, "kind": "serving-plan", "planner": "coral",
            "mode": allocation.mode, "cost_per_hour": round(allocation.cost_per_hour, 4),
            "goodput": round(allocation.goodput, 6), "target_utilization": utilization,
            "gpus_used": dict(sorted(used.items())),
            "gpus_available": {g: gpu.available for g, gpu in sorted(catalog.items())},
            "models": per_model, "notes": notes,
            "inputs": {"demand": demand_document(demand), "gpus": overrides or {}}}


def _summary(allocation: Allocation) -> dict:
    return {"cost_per_hour": round(allocation.cost_per_hour, 4),
            "goodput": round(allocation.goodput, 6), "mode": allocation.mode,
            "solve_seconds": round(allocation.seconds, 4)}


def report_document(allocation, baselines, results, reused, stage1_seconds, sims, notes,
                    utilization) -> dict:
    """report.json: cost, goodput, solve times, columns per model, baselines, simulation."""
    ratios = {name: round(b.cost_per_hour / allocation.cost_per_hour, 4)
              if allocation.cost_per_hour > 0 else None for name, b in baselines.items()}
    return {
        "format_version": 1, "command": "plan serve", "mode": allocation.mode,
        "cost_per_hour": round(allocation.cost_per_hour, 4),
        "goodput": round(allocation.goodput, 6),
        "solve_seconds": round(stage1_seconds + allocation.seconds, 4),
        "stage1_seconds": round(stage1_seconds, 4),
        "stage2_seconds": round(allocation.seconds, 4), "stage2_optimal": allocation.optimal,
        "stage1_reused": reused, "target_utilization": utilization,
        "columns": {name: {"enumerated": r.enumerated, "fitting": r.fitting,
                           "kept": len(r.candidates)} for name, r in results.items()},
        "baselines": {name: _summary(b) for name, b in baselines.items()},
        "baseline_cost_ratio": ratios,
        "simulation": {name: {k: round(float(v), 4) for k, v in vars(s).items()}
                       for name, s in sims.items()},
        "notes": notes}
