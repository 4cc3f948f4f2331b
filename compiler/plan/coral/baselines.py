"""Baselines a Coral plan is compared with, both on the same performance model and catalog.

- homogeneous: each model on its single best GPU type (the type that serves it alone at least
  cost within that type's availability), replicas TP x PP on that type, one shared MILP.
- per_model (Mélange-style): models planned one by one, each the cheapest mix of single-type
  replicas against what earlier models left of the pool (no joint sharing, no mixed pipelines).
"""

from __future__ import annotations

import time
from dataclasses import replace

from .catalog import GpuType, with_availability
from .stage1 import Candidate, Stage1Result
from .stage2 import Allocation, allocation, solve, solve_max_goodput, solve_min_cost


def best_single_type(result: Stage1Result, demand: float, catalog: dict[str, GpuType]) -> str:
    """The GPU type serving this model alone most cheaply (or, if none can, serving most)."""
    by_type: dict[str, list[Candidate]] = {}
    for column in result.homogeneous:
        by_type.setdefault(column.config.stages[0].gpu, []).append(column)
    scores = []
    for gpu, columns in sorted(by_type.items()):
        alone = solve_min_cost(columns, {result.model: demand}, catalog)
        if alone is not None:
            scores.append((0, alone.cost_per_hour, gpu))
        else:
            most = solve_max_goodput(columns, {result.model: demand}, catalog)
            scores.append((1, -most.goodput, gpu))
    return min(scores)[2] if scores else ""


def homogeneous_baseline(results: dict[str, Stage1Result], demand: dict[str, float],
                         catalog: dict[str, GpuType], weights=None) -> Allocation:
    """Each model restricted to its best single GPU type; one MILP over the shared pool."""
    start = time.perf_counter()
    columns = []
    for model, result in results.items():
        gpu = best_single_type(result, demand[model], catalog)
        columns += [c for c in result.homogeneous if c.config.stages[0].gpu == gpu]
    allocation = solve(columns, demand, catalog, weights)
    allocation.seconds = time.perf_counter() - start
    return allocation


def per_model_baseline(results: dict[str, Stage1Result], demand: dict[str, float],
                       catalog: dict[str, GpuType], weights=None) -> Allocation:
    """Mélange-style: cheapest single-type packing per model, in the demand's order, each
    against the GPUs the earlier models left."""
    start = time.perf_counter()
    remaining = {g: gpu.available for g, gpu in catalog.items()}
    counts: list[tuple[Candidate, int]] = []
    for model, result in results.items():
        pool = with_availability(catalog, remaining)
        alone = solve(result.homogeneous, {model: demand[model]}, pool)
        counts += alone.counts
        for column, n in alone.counts:
            for gpu, k in column.gpu_counts.items():
                remaining[gpu] -= k * n
    weights = dict(weights or demand)
    result = allocation(counts, demand, weights, catalog, "cost", time.perf_counter() - start,
                        True)
    return result if result.goodput >= 1 - 1e-9 else replace(result, mode="goodput")
