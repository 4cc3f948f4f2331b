"""Planner checks: DP = brute force on a tiny graph, plans are valid, memory is respected,
the graph pipeline beats the sequential one on multi-branch models, errors name the stage."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlc.compiler.errors import MlcError
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.partition.cost import CostModel, Machine
from mlc.compiler.partition.driver import partition
from mlc.compiler.partition.plan_io import check_plan
from mlc.compiler.partition.planner import plan, planning_tree
from mlc.compiler.partition.schedule import in_flight, stage_edges
from mlc.compiler.partition.sp import graph_sp_tree, op_dag
from mlc.specs.workloads import get_workload

V100 = Machine(peak_flops=125e12, dram_bandwidth=900e9, memory_bytes=16 * 10**9)


def _two_branch_graph(width: int = 512):
    """Six ops: two MatMul+Relu branches of different widths, a Concat and a head."""
    g = GraphBuilder("two_branch")
    x = g.input("X", (8, width))
    outs = []
    for b, inner in enumerate((width, 2 * width)):
        w = g.weight(f"w{b}", np.zeros((width, inner), np.float32))
        outs.append(g.op("Relu", g.op("MatMul", x, w, name=f"mm{b}"), name=f"relu{b}"))
    cat = g.op("Concat", *outs, axis=-1, name="cat")
    head = g.weight("head.w", np.zeros((3 * width, width), np.float32))
    return g.build(g.op("MatMul", cat, head, name="head"))


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1:]
        yield [[first], *part]


def _brute_force(model, graph, devices, b, batch):
    """Min over all convex partitions and power-of-two degrees using exactly `devices`."""
    order, succ, _ = op_dag(graph)
    best = float("inf")
    for part in _set_partitions(order):
        if len(part) > devices:
            continue
        stages = [tuple(p) for p in part]
        edges = stage_edges(stages, succ)
        if not _acyclic(len(stages), edges):
            continue  # a non-convex partition makes a cycle between stages
        for degrees in itertools.product([1, 2, 4], repeat=len(stages)):
            if sum(degrees) != devices or any(b % p for p in degrees):
                continue
            costs = [model.stage_cost(s, p, b, batch // b) for s, p in zip(stages, degrees)]
            counts = _in_flight_any_order(len(stages), edges)
            if all(c.memory(k) <= model.machine.memory_bytes for c, k in zip(costs, counts)):
                best = min(best, max(c.time_per_sample() for c in costs))
    return best


def _acyclic(n, edges):
    indegree, ready, seen = [0] * n, [], 0
    for _, j in edges:
        indegree[j] += 1
    ready = [i for i in range(n) if indegree[i] == 0]
    while ready:
        i = ready.pop()
        seen += 1
        for a, j in edges:
            if a == i:
                indegree[j] -= 1
                if indegree[j] == 0:
                    ready.append(j)
    return seen == n


def _in_flight_any_order(n, edges):
    counts = {}

    def depth(s):
        if s not in counts:
            counts[s] = 1 + max((depth(t) for a, t in edges if a == s), default=0)
        return counts[s]
    return [depth(s) for s in range(n)]


@pytest.mark.parametrize("devices", [2, 3, 4, 5])
def test_dp_matches_brute_force(devices):
    graph = _two_branch_graph()
    model = CostModel(graph, V100)
    tree = planning_tree(model, graph_sp_tree(graph), 64)  # fine units: every op its own
    result = plan(model, tree, devices, 16, "graph_pipeline", micro_batch=4)
    expected = _brute_force(model, graph, devices, 4, 16)
    assert result.target_tps == pytest.approx(expected, rel=0.011)
    assert result.target_tps >= expected * (1 - 1e-9)


@pytest.mark.parametrize("spec,devices", [("multibranch_small", 3), ("mmt:small", 4),
                                          ("dlrm:small", 5), ("candle_uno:small", 4)])
def test_plans_are_valid(spec, devices):
    graph = get_workload(spec)
    results = partition(graph, spec, devices, 16, V100)
    for planned in results.values():
        assert check_plan(planned.plan, graph) == []
        stages = [tuple(s["ops"]) for s in planned.plan["stages"]]
        _, succ, _ = op_dag(graph)
        edges = stage_edges(stages, succ)
        if planned.result.planner == "graph_pipeline":
            assert [s["in_flight"] for s in planned.plan["stages"]] == in_flight(len(stages), edges)


def test_graph_pipeline_beats_sequential_on_branches():
    graph = get_workload("candle_uno:width=1024")
    results = partition(graph, "candle_uno", 8, 256, V100)
    assert (results["graph_pipeline"].simulation.throughput
            >= results["sequential_pipeline"].simulation.throughput)


def test_memory_limit_respected():
    graph = get_workload("candle_uno")
    machine = Machine(peak_flops=125e12, dram_bandwidth=900e9, memory_bytes=4 * 10**9)
    results = partition(graph, "candle_uno", 8, 64, machine)
    for planned in results.values():
        assert max(planned.simulation.peak_memory) <= 4 * 10**9


def test_memory_error_names_the_stage():
    graph = get_workload("candle_uno")
    machine = Machine(peak_flops=125e12, dram_bandwidth=900e9, memory_bytes=10**9)
    with pytest.raises(MlcError, match=r"stage \d+ .*GB per device, [0-9.]+ GB over"):
        partition(graph, "candle_uno", 2, 64, machine)


def test_more_devices_than_ops():
    with pytest.raises(MlcError, match="more than the model's 14 ops"):
        partition(get_workload("multibranch_small"), "m", 15, 8, V100)


def test_stage_cap():
    results = partition(get_workload("candle_uno:small"), "c", 4, 16, V100, max_stages=2)
    for planned in results.values():
        assert len(planned.plan["stages"]) <= 2
        assert sorted(r for s in planned.plan["stages"] for r in s["devices"]) == [0, 1, 2, 3]
