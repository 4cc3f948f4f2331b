"""Stage sub-graphs of a plan: which values each stage receives, computes and sends.

A stage's graph is `Graph.build` over its nodes with the model's types at the rows one replica
of the stage handles (the micro-batch divided by the stage's devices): its
inputs are the model inputs it reads plus values from predecessor stages; its outputs are the
values later stages read plus the model output. Only the weights its nodes read go with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph, IRError
from mlc.compiler.ir.types import TensorType, is_float

from .plan import PipelinePlan, stage_of_node


@dataclass(frozen=True)
class StageSpec:
    """What one stage computes and exchanges (value names; ranks come from the plan)."""

    id: int
    graph: Graph
    data_inputs: tuple[str, ...]                   # model inputs it reads (sliced locally)
    receives: tuple[tuple[str, int], ...]          # (value, producer stage)
    sends: tuple[tuple[str, int], ...]             # (value, consumer stage)
    loss_output: str | None                        # the model output, on the loss stage only

    def differentiable(self, value: str) -> bool:
        return is_float(self.graph.types[value].dtype)


def micro_batch_graph(graph: Graph, micro_batch: int) -> Graph:
    """The whole graph with every model input's batch dimension set to `micro_batch`."""
    inputs = {name: TensorType((micro_batch,) + t.shape[1:], t.dtype)
              for name, t in graph.inputs.items()}
    try:
        return Graph.build(graph.name, inputs, graph.nodes, graph.outputs, graph.weights)
    except IRError as err:
        raise MlcError(f"graph {graph.name!r} cannot run at micro-batch {micro_batch} (a shape "
                       f"is fixed to the full batch?): {err}") from None


def transfer_values(graph: Graph, plan: PipelinePlan) -> list[tuple[str, int, int]]:
    """(value, producer stage, consumer stage) for every value crossing stages, sorted."""
    where = stage_of_node(plan)
    producer = {out: where[node.name] for node in graph.nodes for out in node.outputs}
    crossings = {(value, producer[value], where[node.name])
                 for node in graph.nodes for value in node.inputs
                 if value in producer and producer[value] != where[node.name]}
    return sorted(crossings)


def stage_specs(graph: Graph, plan: PipelinePlan) -> list[StageSpec]:
    """One StageSpec per plan stage, with micro-batch-sized types."""
    crossings = transfer_values(graph, plan)
    where = stage_of_node(plan)
    specs = []
    for stage in plan.stages:
        nodes = [node for node in graph.nodes if where[node.name] == stage.id]
        produced = {out for node in nodes for out in node.outputs}
        read = list(dict.fromkeys(v for node in nodes for v in node.inputs if v not in produced))
        data_inputs = tuple(v for v in read if v in graph.inputs)
        receives = tuple(dict.fromkeys((v, s) for v, s, t in crossings if t == stage.id))
        sends = tuple((v, t) for v, s, t in crossings if s == stage.id)
        loss_output = graph.outputs[0] if graph.outputs[0] in produced else None
        outputs = list(dict.fromkeys([v for v, _ in sends] + ([loss_output] * bool(loss_output))))
        if not outputs:
            raise MlcError(f"stage {stage.id}: no later stage or the loss uses what it computes")
        micro = micro_batch_graph(graph, replica_rows(plan, stage.id))
        inputs = {v: micro.types[v] for v in list(data_inputs) + [v for v, _ in receives]}
        weights = {v: graph.weights[v] for v in read if v in graph.weights}
        try:
            stage_graph = Graph.build(f"{graph.name}.stage{stage.id}", inputs, nodes, outputs,
                                      weights)
        except IRError as err:
            raise MlcError(f"stage {stage.id}: cannot build its sub-graph ({err})") from None
        specs.append(StageSpec(stage.id, stage_graph, data_inputs, receives, sends, loss_output))
    _check_shared_weights(specs)
    return specs


def replica_rows(plan: PipelinePlan, stage_id: int) -> int:
    """Rows of a micro-batch that each replica of a (data-parallel) stage handles."""
    return plan.micro_batch // len(plan.stages[stage_id].devices)


def runnable_specs(graph: Graph, plan: PipelinePlan) -> list[StageSpec]:
    """`stage_specs`, after refusing what `mlc train` cannot run: a data-parallel stage whose
    device count does not divide the micro-batch."""
    for stage in plan.stages:
        if plan.micro_batch % len(stage.devices):
            raise MlcError(f"stage {stage.id} has {len(stage.devices)} devices (data parallel), "
                           f"which do not divide the micro-batch {plan.micro_batch}; re-plan "
                           "with a micro-batch that is a multiple of every stage's devices")
    return stage_specs(graph, plan)


def _check_shared_weights(specs: list[StageSpec]) -> None:
    owner: dict[str, int] = {}
    for spec in specs:
        for name, array in spec.graph.weights.items():
            trainable = is_float(TensorType.of(array).dtype)
            if trainable and name in owner:
                raise MlcError(f"weight {name!r} is read by stage {owner[name]} and stage "
                               f"{spec.id}; a trainable weight must live in one stage")
            owner[name] = spec.id
