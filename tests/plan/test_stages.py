"""Stage 1 pruning against a brute-force Pareto check, stage 2 against brute-force
enumeration, and the two-stage decomposition against the joint MILP."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlc.compiler.plan.coral.baselines import homogeneous_baseline, per_model_baseline
from mlc.compiler.plan.coral.catalog import load_catalog, with_availability
from mlc.compiler.plan.coral.perf import ReplicaConfig, ReplicaPerf, Stage, Workload
from mlc.compiler.plan.coral.stage1 import Candidate, prune_dominated, run_stage1
from mlc.compiler.plan.coral.stage2 import solve, solve_max_goodput, solve_min_cost
from mlc.compiler.plan.models import load_model_config

SMALL = ["a100-40gb", "l4", "l40s"]


def column(model, gpus: dict[str, int], rate: float) -> Candidate:
    stages = tuple(Stage(gpu, n, 1) for gpu, n in gpus.items())
    return Candidate(model, ReplicaConfig(stages), ReplicaPerf(True, "", rate, 8))


def dominated(a: Candidate, b: Candidate, gpus) -> bool:
    """b dominates a (the definition, written out independently)."""
    no_more = all(b.gpu_counts.get(g, 0) <= a.gpu_counts.get(g, 0) for g in gpus)
    return no_more and b.perf.throughput >= a.perf.throughput


@pytest.mark.parametrize("seed", range(5))
def test_pruning_keeps_exactly_the_pareto_set(seed):
    rng = np.random.default_rng(seed)
    gpus = ["a", "b", "c"]
    candidates = [column("m", {g: int(n) for g, n in zip(gpus, rng.integers(0, 3, 3)) if n},
                         float(rng.integers(1, 6))) for _ in range(40)]
    candidates = [c for c in candidates if c.gpu_counts]
    kept = prune_dominated(candidates, gpus)
    for c in candidates:
        others = [d for d in candidates if d is not c and dominated(c, d, gpus)
                  and (d.gpu_counts != c.gpu_counts or d.perf.throughput > c.perf.throughput)]
        strict = [d for d in others if any(d.gpu_counts.get(g, 0) < c.gpu_counts.get(g, 0)
                                           for g in gpus) or d.perf.throughput > c.perf.throughput]
        if strict:
            assert c not in kept  # strictly dominated: dropped
        elif not others:
            # nothing dominates it, unless an exact duplicate (same vector and rate) was kept
            twins = [d for d in kept if d.gpu_counts == c.gpu_counts
                     and d.perf.throughput == c.perf.throughput]
            assert c in kept or twins
    for a, b in itertools.permutations(kept, 2):
        assert not dominated(a, b, gpus)


@pytest.fixture(scope="module")
def small_results():
    catalog = load_catalog(only=SMALL)
    workload = Workload(1.0, 512, 256)
    return {name: run_stage1(load_model_config(name), workload, catalog, max_gpus=4)
            for name in ("llama-3.1-8b", "qwen2.5-14b")}


def test_real_pruning_drops_only_dominated(small_results):
    result = small_results["qwen2.5-14b"]
    kept = {id(c) for c in result.candidates}
    assert 0 < len(result.candidates) < len(result.all_fitting)
    for c in result.all_fitting:
        if id(c) not in kept:
            assert any(dominated(c, k, SMALL) for k in result.candidates)
    assert any(c.config.mixed for c in result.all_fitting)


def brute_force(columns, demand, catalog, goodput=False):
    """Every integer vector within small bounds: the least cost meeting demand, or the most
    served fraction (then least cost)."""
    best = None
    ranges = [range(0, 5) for _ in columns]
    for x in itertools.product(*ranges):
        used = {g: 0 for g in catalog}
        served = {m: 0.0 for m in demand}
        cost = 0.0
        for c, n in zip(columns, x):
            for g, k in c.gpu_counts.items():
                used[g] += k * n
            served[c.model] += n * c.perf.throughput
            cost += n * c.cost(catalog)
        if any(used[g] > catalog[g].available for g in catalog):
            continue
        fraction = sum(min(served[m], demand[m]) for m in demand) / sum(demand.values())
        if not goodput and fraction < 1:
            continue
        key = (-round(fraction, 9), round(cost, 9))
        best = key if best is None or key < best else best
    return best


def tiny_instance():
    catalog = load_catalog(only=["l4", "a100-40gb"])
    columns = [column("x", {"l4": 1}, 2.0), column("x", {"a100-40gb": 1}, 7.0),
               column("x", {"l4": 1, "a100-40gb": 1}, 9.5),
               column("y", {"l4": 2}, 3.0), column("y", {"a100-40gb": 1}, 5.0)]
    return catalog, columns


@pytest.mark.parametrize("available,demand", [
    ({"l4": 8, "a100-40gb": 8}, {"x": 13.0, "y": 6.0}),
    ({"l4": 3, "a100-40gb": 2}, {"x": 9.0, "y": 4.0}),
    ({"l4": 6, "a100-40gb": 1}, {"x": 5.0, "y": 5.0}),
])
def test_stage2_matches_brute_force(available, demand):
    catalog, columns = tiny_instance()
    catalog = with_availability(catalog, available)
    expected = brute_force(columns, demand, catalog)
    got = solve_min_cost(columns, demand, catalog)
    assert got is not None and expected is not None
    assert got.cost_per_hour == pytest.approx(expected[1])


def test_goodput_mode_when_gpus_are_scarce():
    catalog, columns = tiny_instance()
    catalog = with_availability(catalog, {"l4": 2, "a100-40gb": 1})
    demand = {"x": 20.0, "y": 10.0}
    assert solve_min_cost(columns, demand, catalog) is None
    got = solve(columns, demand, catalog)
    expected = brute_force(columns, demand, catalog, goodput=True)
    assert got.mode == "goodput" and 0 < got.goodput < 1
    assert got.goodput == pytest.approx(-expected[0])
    assert got.cost_per_hour == pytest.approx(expected[1])
    assert all(got.served[m] <= demand[m] + 1e-9 for m in demand)


@pytest.mark.parametrize("available", [
    {g: 64 for g in SMALL}, {"a100-40gb": 2, "l4": 6, "l40s": 2},
    {"a100-40gb": 1, "l4": 3, "l40s": 0}])
def test_decomposition_equals_joint_milp(small_results, available):
    catalog = with_availability(load_catalog(only=SMALL), available)
    demand = {"llama-3.1-8b": 14.0, "qwen2.5-14b": 6.0}
    pruned = [c for r in small_results.values() for c in r.candidates]
    joint = [c for r in small_results.values() for c in r.all_fitting]
    two_stage = solve(pruned, demand, catalog)
    one_milp = solve(joint, demand, catalog)
    assert two_stage.mode == one_milp.mode
    assert two_stage.goodput == pytest.approx(one_milp.goodput, abs=1e-6)
    assert two_stage.cost_per_hour == pytest.approx(one_milp.cost_per_hour, rel=1e-6)
    for base in (homogeneous_baseline(small_results, demand, catalog),
                 per_model_baseline(small_results, demand, catalog)):
        assert base.goodput <= two_stage.goodput + 1e-9
        if base.goodput >= 1 - 1e-9:
            assert base.cost_per_hour >= two_stage.cost_per_hour - 1e-9


def test_goodput_solver_serves_nothing_without_gpus(small_results):
    catalog = with_availability(load_catalog(only=SMALL), {g: 0 for g in SMALL})
    columns = [c for r in small_results.values() for c in r.candidates]
    got = solve_max_goodput(columns, {"llama-3.1-8b": 1.0}, catalog)
    assert got.goodput == 0 and not got.counts
