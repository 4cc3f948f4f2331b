"""Load a partition plan (plan.json beside graph.json) and check it against its graph.

`load_plan(DIR)` returns the graph and a validated `PipelinePlan`: every node in exactly one
stage, every rank in exactly one stage, stage edges that cover the graph's data edges in
topological order, and a per-stage schedule that runs without deadlock. Any problem is an
MlcError that names the stage, op or rank at fault.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph
from mlc.compiler.ir.serialize import graph_to_json, load_graph
from mlc.compiler.safe_io import check_number, read_json

PLAN_FILE = "plan.json"
MAX_COUNT = 2**31 - 1  # batch sizes, ranks, counts: anything larger is not a real plan
_TASK = re.compile(r"[FB](0|[1-9][0-9]{0,8})")


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its graph nodes (by name), ranks and schedule (e.g. F0 F1 B0 ...)."""

    id: int
    ops: tuple[str, ...]
    devices: tuple[int, ...]
    order: tuple[str, ...]


@dataclass(frozen=True)
class PipelinePlan:
    """A validated plan: stages in topological order, stage edges, micro-batching."""

    planner: str
    batch: int
    micro_batch: int
    stages: tuple[Stage, ...]
    edges: tuple[tuple[int, int], ...]

    @property
    def num_micro_batches(self) -> int:
        return self.batch // self.micro_batch

    @property
    def world_size(self) -> int:
        return sum(len(stage.devices) for stage in self.stages)

    def stage_of_rank(self, rank: int) -> Stage:
        return next(stage for stage in self.stages if rank in stage.devices)


def graph_hash(graph: Graph) -> str:
    """The hash a plan records of the graph it was made for."""
    doc = json.dumps(graph_to_json(graph), sort_keys=True).encode()
    return hashlib.sha256(doc).hexdigest()


def default_order(num_micro_batches: int, in_flight: int) -> list[str]:
    """1F1B with `in_flight` warm-up forwards: F0..F(k-1), then B/F alternating, then the rest.

    >>> default_order(3, 2)
    ['F0', 'F1', 'B0', 'F2', 'B1', 'B2']
    """
    k = max(1, min(in_flight, num_micro_batches))
    order = [f"F{i}" for i in range(k)]
    for i in range(num_micro_batches - k):
        order += [f"B{i}", f"F{i + k}"]
    return order + [f"B{i}" for i in range(num_micro_batches - k, num_micro_batches)]


def load_plan(directory: Path) -> tuple[Graph, PipelinePlan]:
    """Read DIR/graph.json and DIR/plan.json; raise MlcError on any mismatch."""
    directory = Path(directory)
    plan_path = directory / PLAN_FILE
    hint = "give a folder written by `mlc partition --out`"
    if not directory.is_dir():
        raise MlcError(f"{directory}: no such folder; {hint}")
    if not (directory / "graph.json").is_file():
        raise MlcError(f"{directory}: no graph.json, so not a partition artifact; {hint}")
    if not plan_path.is_file():
        raise MlcError(f"{plan_path}: no such file, so not a partition artifact; {hint}")
    doc = read_json(plan_path, "partition plan (plan.json)")
    graph = load_graph(directory / "graph.json")
    try:
        plan = parse_plan(doc, graph)
    except MlcError as err:
        raise MlcError(f"{err} (in {plan_path})") from None
    return graph, plan


def parse_plan(doc: dict, graph: Graph) -> PipelinePlan:
    """A PipelinePlan from plan.json's document, validated against `graph`; every field is
    type- and range-checked, so a tampered file is a clear MlcError, never a crash."""
    if not isinstance(doc, dict) or doc.get("kind") != "partition-plan" \
            or doc.get("format_version") != 1:
        raise MlcError("not a partition plan (kind 'partition-plan', format_version 1)")
    if doc.get("graph_hash") != graph_hash(graph):
        raise MlcError(f"plan file is for another model (graph_hash does not match graph "
                       f"{graph.name!r}); re-run `mlc partition` on this model")
    batch = _whole(doc, "batch", "batch", low=1)
    micro = _whole(doc, "micro_batch", "micro_batch", low=1)
    if batch % micro:
        raise MlcError(f"micro_batch {micro} does not divide batch {batch}")
    _check_batch(batch, graph)  # before anything sized by the batch is built
    if _whole(doc, "num_micro_batches", "num_micro_batches", low=1,
              default=batch // micro) != batch // micro:
        raise MlcError(f"num_micro_batches {doc['num_micro_batches']} is not batch {batch} / "
                       f"micro_batch {micro}")
    schedule = _field(doc, "schedule", dict, "schedule", default={})
    orders = _field(schedule, "order", dict, "schedule.order", default={})
    entries = _field(doc, "stages", list, "stages")
    if not entries:
        raise MlcError("the plan has no stages")
    stages = [_stage(entry, position, micro, batch, orders)
              for position, entry in enumerate(entries)]
    edges = []
    for k, edge in enumerate(_field(doc, "edges", list, "edges")):
        if not isinstance(edge, list) or len(edge) != 2:
            raise MlcError(f"edges[{k}]: expected a pair [from stage, to stage], got {edge!r}")
        edges.append(tuple(check_number(v, f"edges[{k}]", low=0, integer=True) for v in edge))
    plan = PipelinePlan(str(doc.get("planner", "?")), batch, micro, tuple(stages), tuple(edges))
    _check_ops(plan, graph)
    _check_ranks(plan)
    if _whole(doc, "devices", "devices", low=1, default=plan.world_size) != plan.world_size:
        raise MlcError(f"the plan says {doc['devices']} devices, its stages use "
                       f"{plan.world_size}")
    _check_edges(plan, graph)
    _check_schedule(plan)
    return plan


def _field(doc: dict, key: str, kind: type, where: str, default=None):
    """doc[key], which must be a `kind` (a missing key is an error unless there is a default)."""
    if key not in doc:
        if default is None:
            raise MlcError(f"{where}: missing")
        return default
    value = doc[key]
    if not isinstance(value, kind):
        raise MlcError(f"{where}: expected a JSON {_JSON_NAMES[kind]}, got {value!r:.60}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string"}


def _whole(doc: dict, key: str, where: str, low: int, default: int | None = None) -> int:
    """doc[key] as a whole number >= low (a float like 2.5, a string or a bool is refused)."""
    if key not in doc and default is not None:
        return default
    if key not in doc:
        raise MlcError(f"{where}: missing")
    return check_number(doc[key], where, low=low, high=MAX_COUNT, integer=True)


def _stage(entry, position: int, micro: int, batch: int, orders: dict) -> Stage:
    """One stages[] entry, checked field by field."""
    where = f"stages[{position}]"
    if not isinstance(entry, dict):
        raise MlcError(f"{where}: expected a JSON object, got {entry!r:.60}")
    if _whole(entry, "id", f"{where}.id", low=0) != position:
        raise MlcError(f"stage ids must be 0..n-1 in order; {where} has id {entry['id']}")
    if _whole(entry, "micro_batch", f"{where}.micro_batch", low=1, default=micro) != micro:
        raise MlcError(f"stage {position}: micro_batch {entry['micro_batch']} differs from "
                       f"the plan's {micro}; per-stage micro-batch sizes are not supported")
    ops = _field(entry, "ops", list, f"{where}.ops")
    devices = _field(entry, "devices", list, f"{where}.devices")
    if not all(isinstance(op, str) for op in ops):
        raise MlcError(f"{where}.ops: expected node names (strings)")
    ranks = tuple(check_number(d, f"{where}.devices", low=0, high=MAX_COUNT, integer=True)
                  for d in devices)
    in_flight = _whole(entry, "in_flight", f"{where}.in_flight", low=1, default=1)
    order = _field(orders, str(position), list, f"schedule.order[{position}]", default=[])
    if not all(isinstance(task, str) and _TASK.fullmatch(task) for task in order):
        raise MlcError(f"schedule.order[{position}]: tasks must be F<i> or B<i>, like F0 B0")
    return Stage(position, tuple(ops), ranks,
                 tuple(order or default_order(batch // micro, in_flight)))


def stage_of_node(plan: PipelinePlan) -> dict[str, int]:
    return {op: stage.id for stage in plan.stages for op in stage.ops}


def _check_ops(plan: PipelinePlan, graph: Graph) -> None:
    names = [node.name for node in graph.nodes]
    if "" in names:
        raise MlcError("the graph has unnamed nodes; a plan cannot refer to them")
    seen: dict[str, int] = {}
    for stage in plan.stages:
        if not stage.ops:
            raise MlcError(f"stage {stage.id} has no ops")
        for op in stage.ops:
            if op not in names:
                raise MlcError(f"stage {stage.id}: unknown op {op!r} (not a node of the graph)")
            if op in seen:
                raise MlcError(f"op {op!r} is in stage {seen[op]} and stage {stage.id}")
            seen[op] = stage.id
    missing = [name for name in names if name not in seen]
    if missing:
        raise MlcError(f"{len(missing)} op(s) in no stage: {', '.join(missing[:5])}")


def _check_ranks(plan: PipelinePlan) -> None:
    ranks = [rank for stage in plan.stages for rank in stage.devices]
    for stage in plan.stages:
        if not stage.devices:
            raise MlcError(f"stage {stage.id} has no devices")
    if sorted(ranks) != list(range(len(ranks))):
        dupes = sorted({r for r in ranks if ranks.count(r) > 1})
        raise MlcError(f"each rank 0..{len(ranks) - 1} must be in exactly one stage; got "
                       f"ranks {sorted(ranks)}" + (f" (repeated: {dupes})" if dupes else ""))


def _check_edges(plan: PipelinePlan, graph: Graph) -> None:
    ids = {stage.id for stage in plan.stages}
    for s, t in plan.edges:
        if s not in ids or t not in ids:
            raise MlcError(f"edge ({s}, {t}) names an unknown stage")
        if s >= t:
            raise MlcError(f"edge ({s}, {t}) goes backwards; stage ids must be topological")
    where = stage_of_node(plan)
    producer = {out: where[node.name] for node in graph.nodes for out in node.outputs}
    edges = set(plan.edges)
    for node in graph.nodes:
        t = where[node.name]
        for value in node.inputs:
            s = producer.get(value, t)
            if s == t:
                continue
            if s > t:
                raise MlcError(f"op {node.name!r} in stage {t} reads {value!r} from later stage "
                               f"{s}; stages must be in topological order")
            if (s, t) not in edges:
                raise MlcError(f"stage {t} reads {value!r} from stage {s}, but the plan has no "
                               f"edge ({s}, {t})")


def _check_batch(batch: int, graph: Graph) -> None:
    for name, tensor_type in graph.inputs.items():
        if not tensor_type.shape or tensor_type.shape[0] != batch:
            raise MlcError(f"model input {name!r} has shape {tensor_type.shape}, but the plan's "
                           f"batch is {batch}; the batch must be dimension 0 of every input")
    if len(graph.outputs) != 1:
        raise MlcError(f"training needs one model output for the loss; the graph has "
                       f"{len(graph.outputs)}")


def _check_schedule(plan: PipelinePlan) -> None:
    """Each stage runs F0..F(n-1) and B0..B(n-1) once, in index order, F i before B i; and the
    stages' orders together cannot deadlock (simulated with the data dependencies)."""
    n = plan.num_micro_batches
    for stage in plan.stages:
        forwards = [t for t in stage.order if t.startswith("F")]
        backwards = [t for t in stage.order if t.startswith("B")]
        expect_f, expect_b = [f"F{i}" for i in range(n)], [f"B{i}" for i in range(n)]
        if forwards != expect_f or backwards != expect_b or len(stage.order) != 2 * n:
            raise MlcError(f"stage {stage.id}: schedule {list(stage.order)} must run F0..F{n - 1} "
                           f"and B0..B{n - 1} each once, in index order")
        if any(stage.order.index(f"B{i}") < stage.order.index(f"F{i}") for i in range(n)):
            raise MlcError(f"stage {stage.id}: schedule runs a backward before its forward")
    preds = {stage.id: [s for s, t in plan.edges if t == stage.id] for stage in plan.stages}
    succs = {stage.id: [t for s, t in plan.edges if s == stage.id] for stage in plan.stages}
    done: set[tuple[int, str]] = set()
    cursor = {stage.id: 0 for stage in plan.stages}
    progress = True
    while progress:
        progress = False
        for stage in plan.stages:
            while cursor[stage.id] < len(stage.order):
                task = stage.order[cursor[stage.id]]
                needs = preds[stage.id] if task[0] == "F" else succs[stage.id]
                if not all((other, task) in done for other in needs):
                    break
                done.add((stage.id, task))
                cursor[stage.id] += 1
                progress = True
    stuck = [f"stage {s.id} at {s.order[cursor[s.id]]}" for s in plan.stages
             if cursor[s.id] < len(s.order)]
    if stuck:
        raise MlcError(f"the schedule deadlocks: {', '.join(stuck)} wait on each other")
