"""Partition a graph with both planners and simulate both plans (what `mlc partition` and
bench/partition.py call)."""

from __future__ import annotations

from dataclasses import dataclass

from mlc.compiler.errors import MlcError
from mlc.compiler.ir import Graph

from .cost import CostModel, Machine
from .plan_io import plan_document
from .planner import PlanResult, plan, planning_tree, sequential_tree
from .schedule import Simulation, in_flight, one_f_one_b, simulate, stage_edges, topological_stages
from .sp import graph_sp_tree, op_dag


@dataclass
class PlannedPipeline:
    """One planner's result: the plan.json document, its simulation and the search result."""

    result: PlanResult
    plan: dict
    simulation: Simulation


def realize(model: CostModel, graph: Graph, source: str, result: PlanResult,
            devices: int, chain: bool = False) -> PlannedPipeline:
    """Order stages topologically, derive edges, in-flight counts, 1F1B orders; simulate.

    `chain` (the sequential baseline): stages also wait on their neighbors in id order, and
    in-flight counts are PipeDream's (stages - id), as a chain pipeline runs."""
    _, succ, _ = op_dag(graph)
    position = {n.name: i for i, n in enumerate(graph.nodes)}
    by_ops = {s.ops: s.degree for s in result.stages}
    stages = topological_stages(
        [tuple(sorted(s.ops, key=position.__getitem__)) for s in result.stages], succ)
    degrees = [by_ops.get(ops) or _degree_of(result, ops) for ops in stages]
    edges = stage_edges(stages, succ)
    sim_edges = edges
    if chain:
        sim_edges = sorted(set(edges) | {(i, i + 1) for i in range(len(stages) - 1)})
    counts = in_flight(len(stages), sim_edges)
    num_micro = result.batch // result.micro_batch
    orders = [one_f_one_b(k, num_micro) for k in counts]
    sim = simulate(model, stages, degrees, sim_edges, result.micro_batch, result.batch, orders)
    doc = plan_document(graph, source, result.planner, result.batch, result.micro_batch,
                        devices, stages, degrees, edges, counts, orders)
    return PlannedPipeline(result, doc, sim)


def _degree_of(result: PlanResult, ops: tuple[str, ...]) -> int:
    members = set(ops)
    return next(s.degree for s in result.stages if set(s.ops) == members)


def partition(graph: Graph, source: str, devices: int, batch: int, machine: Machine,
              micro_batch: int | None = None, max_stages: int | None = None,
              measured: dict | None = None) -> dict[str, PlannedPipeline]:
    """Both planners on one cost model: {"graph_pipeline": ..., "sequential_pipeline": ...}.

    `measured` (from `mlc.runtime.profile_ops.profile_ops`) replaces the roofline op times.
    Requires: devices >= 1, batch >= 1. Ensures: each plan partitions ops and devices.
    Raises MlcError on bad input (more devices than ops, micro-batch not dividing the batch,
    nothing fits memory).
    """
    if devices < 1:
        raise MlcError(f"--devices {devices}: need at least one device")
    if devices > len(graph.nodes):
        raise MlcError(f"--devices {devices} is more than the model's {len(graph.nodes)} ops; "
                       "use at most that many devices")
    if micro_batch and (micro_batch < 1 or batch % micro_batch):
        raise MlcError(f"--micro-batch {micro_batch} does not divide --batch {batch}")
    if micro_batch and micro_batch & (micro_batch - 1):
        raise MlcError(f"--micro-batch {micro_batch}: must be a power of two")
    model = CostModel(graph, machine, measured)
    tree = planning_tree(model, graph_sp_tree(graph), devices)
    out = {}
    for name, view in (("graph_pipeline", tree), ("sequential_pipeline", sequential_tree(tree))):
        chain = name == "sequential_pipeline"

        def evaluate(result: PlanResult, chain=chain) -> float:
            return realize(model, graph, source, result, devices, chain).simulation.throughput
        result = plan(model, view, devices, batch, name, micro_batch, max_stages, evaluate)
        out[name] = realize(model, graph, source, result, devices, chain)
    return out
