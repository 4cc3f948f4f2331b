"""Stage 2 (online): how many replicas of each stage-1 column, as a MILP solved by HiGHS
(`scipy.optimize.milp`).

Cost mode:     min sum_c cost_c x_c
               s.t. sum_{c of m} rate_c x_c >= demand_m       (every model m)
                    sum_c gpus_{c,g} x_c    <= available_g    (every GPU type g), x integer >= 0
Goodput mode (when cost mode is infeasible):
               max sum_m weight_m served_m / demand_m, 0 <= served_m <= sum_{c of m} rate_c x_c,
               then, at that goodput, the least cost.
The same functions solve the joint MILP: pass every fitting column instead of the pruned ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from .catalog import GpuType
from .stage1 import Candidate

MIP_GAP = 1e-7
TIME_LIMIT_S = 60.0


@dataclass
class Allocation:
    """A stage-2 answer: replicas per column, the cost, per-model served rate and goodput."""

    counts: list[tuple[Candidate, int]]  # columns with a positive replica count
    cost_per_hour: float
    served: dict[str, float]  # requests/s each model can serve (capped at its demand)
    goodput: float  # weighted served fraction, 0..1
    mode: str  # "cost" or "goodput"
    seconds: float
    optimal: bool


def _upper_bounds(columns, demand, catalog) -> np.ndarray:
    """No column ever needs more replicas than serve its model alone or than the GPUs allow."""
    bounds = []
    for column in columns:
        need = math.ceil(demand[column.model] / column.perf.throughput - 1e-9)
        fit = min(catalog[g].available // n for g, n in column.gpu_counts.items())
        bounds.append(max(0, min(need, fit)))
    return np.array(bounds, dtype=float)


def _matrices(columns, models, catalog):
    gpus = sorted(catalog)
    rate = np.zeros((len(models), len(columns)))
    usage = np.zeros((len(gpus), len(columns)))
    for j, column in enumerate(columns):
        rate[models.index(column.model), j] = column.perf.throughput
        for gpu, n in column.gpu_counts.items():
            usage[gpus.index(gpu), j] = n
    available = np.array([catalog[g].available for g in gpus], dtype=float)
    return rate, usage, available


def _result(columns, x, demand, weights, catalog, mode, seconds, optimal) -> Allocation:
    counts = [(c, int(round(v))) for c, v in zip(columns, x) if round(v) > 0]
    return allocation(counts, demand, weights, catalog, mode, seconds, optimal)


def allocation(counts, demand, weights, catalog, mode, seconds, optimal) -> Allocation:
    """An Allocation of replica `counts` [(candidate, n)]: served rates (capped at demand),
    demand-weighted goodput and cost."""
    capacity = {m: 0.0 for m in demand}
    for column, n in counts:
        capacity[column.model] += n * column.perf.throughput
    served = {m: min(demand[m], capacity[m]) for m in demand}
    total = sum(weights.values())
    goodput = sum(weights[m] * served[m] / demand[m] for m in demand if demand[m] > 0) / total \
        if total > 0 else 1.0
    cost = sum(c.cost(catalog) * n for c, n in counts)
    return Allocation(counts, cost, served, min(1.0, goodput), mode, seconds, optimal)


def solve_min_cost(columns: list[Candidate], demand: dict[str, float],
                   catalog: dict[str, GpuType], time_limit: float = TIME_LIMIT_S
                   ) -> Allocation | None:
    """The cheapest integer replica counts meeting every demand, or None when infeasible."""
    start = time.perf_counter()
    models = list(demand)
    columns = [c for c in columns if c.model in demand and set(c.gpu_counts) <= set(catalog)]
    if not columns:
        return None if any(v > 0 for v in demand.values()) else \
            _result([], [], demand, demand, catalog, "cost", 0.0, True)
    rate, usage, available = _matrices(columns, models, catalog)
    cost = np.array([c.cost(catalog) for c in columns])
    needed = np.array([demand[m] for m in models])
    result = milp(cost, integrality=np.ones(len(columns)),
                  bounds=Bounds(0, _upper_bounds(columns, demand, catalog)),
                  constraints=[LinearConstraint(rate, needed, np.inf),
                               LinearConstraint(usage, -np.inf, available)],
                  options={"mip_rel_gap": MIP_GAP, "time_limit": time_limit})
    if result.x is None or result.status not in (0, 1):
        return None
    return _result(columns, result.x, demand, demand, catalog, "cost",
                   time.perf_counter() - start, result.status == 0)


def solve_max_goodput(columns: list[Candidate], demand: dict[str, float],
                      catalog: dict[str, GpuType], weights: dict[str, float] | None = None,
                      time_limit: float = TIME_LIMIT_S) -> Allocation:
    """Most weighted served fraction within availability (weights default to the demand, so
    goodput is the fraction of requests served); ties broken by least cost."""
    start = time.perf_counter()
    weights = dict(weights or demand)
    models = [m for m in demand if demand[m] > 0]
    columns = [c for c in columns if c.model in models and set(c.gpu_counts) <= set(catalog)]
    if not columns:
        return _result([], [], demand, weights, catalog, "goodput", 0.0, True)
    rate, usage, available = _matrices(columns, models, catalog)
    n_cols, n_models = len(columns), len(models)
    total = sum(weights[m] for m in models)
    # variables: [x (integer replicas) | served_m / demand_m (continuous 0..1)]
    value = np.array([weights[m] / total for m in models])
    served_rows = np.hstack([-rate / np.array([demand[m] for m in models])[:, None],
                             np.eye(n_models)])
    usage_rows = np.hstack([usage, np.zeros((len(available), n_models))])
    bounds = Bounds(0, np.concatenate([_upper_bounds(columns, demand, catalog),
                                       np.ones(n_models)]))
    integrality = np.concatenate([np.ones(n_cols), np.zeros(n_models)])
    constraints = [LinearConstraint(served_rows, -np.inf, 0),
                   LinearConstraint(usage_rows, -np.inf, available)]
    options = {"mip_rel_gap": MIP_GAP, "time_limit": time_limit}
    first = milp(np.concatenate([np.zeros(n_cols), -value]), integrality=integrality,
                 bounds=bounds, constraints=constraints, options=options)
    best = -first.fun if first.x is not None else 0.0
    cost = np.array([c.cost(catalog) for c in columns])
    floor = LinearConstraint(np.concatenate([np.zeros(n_cols), value])[None, :],
                             best - 1e-7, np.inf)
    second = milp(np.concatenate([cost, np.zeros(n_models)]), integrality=integrality,
                  bounds=bounds, constraints=constraints + [floor], options=options)
    chosen = second if second.x is not None else first
    x = chosen.x[:n_cols] if chosen.x is not None else np.zeros(n_cols)
    return _result(columns, x, demand, weights, catalog, "goodput",
                   time.perf_counter() - start, first.status == 0 and second.status == 0)


def solve(columns: list[Candidate], demand: dict[str, float], catalog: dict[str, GpuType],
          weights: dict[str, float] | None = None, time_limit: float = TIME_LIMIT_S
          ) -> Allocation:
    """Cost mode when every demand can be met, else goodput mode."""
    start = time.perf_counter()
    allocation = solve_min_cost(columns, demand, catalog, time_limit)
    if allocation is None:
        allocation = solve_max_goodput(columns, demand, catalog, weights, time_limit)
    allocation.seconds = time.perf_counter() - start
    return allocation
