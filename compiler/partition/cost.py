"""Cost model of pipeline stages: per-op time from FLOPs and bytes on a GPU spec (roofline with
efficiency factors), activation and optimizer-state memory, links as latency + bytes/bandwidth.

Choices (stated, not measured): mixed-precision training, so activations are 2 bytes per element
and every parameter costs 16 bytes of device memory (fp16 weight 2 + fp16 gradient 2 + fp32
master 4 + Adam moments 8); backward is 2x forward for ops that read a weight, 1x otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlc.compiler.ir import Graph
from mlc.compiler.ir.analysis import node_flops

STATE_BYTES_PER_PARAM = 16
ACT_BYTES_PER_ELEMENT = 2


@dataclass(frozen=True)
class OpCost:
    """One op's costs: per-sample FLOPs and activation bytes, plus batch-independent weights."""

    name: str
    flops: float  # per sample, forward
    act_bytes: float  # per sample: bytes read + written (non-weight), at ACT_BYTES_PER_ELEMENT
    out_bytes: float  # per sample: output bytes kept for the backward pass
    params: int
    weight_bytes: float  # bytes of weights read per forward (fp16)


@dataclass(frozen=True)
class Machine:
    """The device and link figures the model needs (V100 defaults via `from_gpu`)."""

    peak_flops: float
    dram_bandwidth: float
    memory_bytes: int
    compute_efficiency: float = 0.5
    memory_efficiency: float = 0.7
    op_overhead: float = 5e-6  # seconds of launch overhead per op
    link_latency: float = 10e-6
    link_bandwidth: float = 12.5e9  # 100 Gb/s InfiniBand between nodes, the conservative case
    node_size: int = 4  # devices per node (Summit: 4 x V100 on NVLink)
    node_bandwidth: float = 150e9  # NVLink, per direction, inside a node

    @classmethod
    def from_gpu(cls, gpu, memory_bytes: int | None = None) -> Machine:
        return cls(peak_flops=gpu.fp16_flops, dram_bandwidth=gpu.dram_bandwidth,
                   memory_bytes=memory_bytes or gpu.memory_bytes)

    def link_time(self, nbytes: float) -> float:
        return self.link_latency + nbytes / self.link_bandwidth if nbytes > 0 else 0.0

    def allreduce_time(self, nbytes: float, degree: int) -> float:
        """Ring all-reduce of `nbytes` over `degree` devices (on NVLink when they fit in one
        node: a data-parallel group is placed on consecutive ranks)."""
        if degree <= 1:
            return 0.0
        steps = 2 * (degree - 1)
        bandwidth = self.node_bandwidth if degree <= self.node_size else self.link_bandwidth
        return steps * self.link_latency + steps / degree * nbytes / bandwidth


@dataclass
class CostModel:
    """Per-op costs of one graph on one machine; `graph_batch` is the batch the graph was built
    with (the first dim of its first input), so per-sample figures divide by it."""

    graph: Graph
    machine: Machine
    measured: dict | None = None  # op -> (batch, fwd_s, bwd_s, fwd_1_s, bwd_1_s): --profile
    ops: dict[str, OpCost] = field(default_factory=dict)
    edges: dict[tuple[str, str], float] = field(default_factory=dict)  # per-sample bytes

    def __post_init__(self):
        graph, types = self.graph, self.graph.types
        first = next(iter(graph.inputs.values()))
        batch = first.shape[0] if first.shape else 1
        producer = {out: n.name for n in graph.nodes for out in n.outputs}
        for node in graph.nodes:
            weights = [n for n in node.inputs if n in graph.weights]
            acts = [n for n in node.inputs if n not in graph.weights] + list(node.outputs)
            params = sum(int(graph.weights[w].size) for w in weights)
            elems = sum(types[n].numel for n in acts)
            out_elems = sum(types[n].numel for n in node.outputs)
            self.ops[node.name] = OpCost(
                node.name, node_flops(node, types) / batch, elems * ACT_BYTES_PER_ELEMENT / batch,
                out_elems * ACT_BYTES_PER_ELEMENT / batch, params, params * ACT_BYTES_PER_ELEMENT)
            for value in node.inputs:
                if value in producer:
                    key = (producer[value], node.name)
                    size = types[value].numel * ACT_BYTES_PER_ELEMENT / batch
                    self.edges[key] = max(self.edges.get(key, 0.0), size)
        self.neighbors: dict[str, list[tuple[str, float]]] = {op: [] for op in self.ops}
        for (src, dst), size in self.edges.items():
            self.neighbors[src].append((dst, size))
            self.neighbors[dst].append((src, size))

    def forward_time(self, op: str, samples: float) -> float:
        if self.measured is not None:
            return _interpolate(self.measured[op], 1, samples)
        cost, m = self.ops[op], self.machine
        compute = cost.flops * samples / (m.peak_flops * m.compute_efficiency)
        memory = (cost.act_bytes * samples + cost.weight_bytes) / (
            m.dram_bandwidth * m.memory_efficiency)
        return max(compute, memory) + m.op_overhead

    def backward_time(self, op: str, samples: float) -> float:
        if self.measured is not None:
            return _interpolate(self.measured[op], 2, samples)
        return self.forward_time(op, samples) * (2.0 if self.ops[op].params else 1.0)

    def stage_cost(self, ops, degree: int, micro_batch: int, num_micro: int) -> StageCost:
        """Costs of `ops` as one stage on `degree` data-parallel devices (see StageCost)."""
        members = set(ops)
        local = micro_batch / degree
        fwd = sum(self.forward_time(op, local) for op in members)
        bwd = sum(self.backward_time(op, local) for op in members)
        comm = 0.0
        for op in members:
            for other, size in self.neighbors[op]:
                if other not in members:  # activation and its gradient cross the link
                    comm += 2 * self.machine.link_time(size * local)
        params = sum(self.ops[op].params for op in members)
        allreduce = self.machine.allreduce_time(params * ACT_BYTES_PER_ELEMENT, degree)
        act = sum(self.ops[op].out_bytes for op in members) * local
        return StageCost(fwd, bwd, comm, allreduce, params * STATE_BYTES_PER_PARAM, act,
                         micro_batch, num_micro)


def _interpolate(measured: tuple, which: int, samples: float) -> float:
    """A measured time at `samples`: the line through the one-sample and full-batch timings
    (never falling below the one-sample time, whatever the timing noise)."""
    batch, at_batch, at_one = measured[0], measured[which], measured[which + 2]
    if batch <= 1:
        return at_batch * samples
    slope = max(0.0, (at_batch - at_one) / (batch - 1))
    return at_one + slope * (samples - 1)


@dataclass(frozen=True)
class StageCost:
    """One stage's per-micro-batch times (seconds), per-iteration all-reduce, and per-device
    memory: static state bytes plus activation bytes per in-flight micro-batch."""

    forward: float
    backward: float
    comm: float
    allreduce: float
    static_bytes: float
    act_bytes_per_micro: float
    micro_batch: int
    num_micro: int

    def time_per_sample(self) -> float:
        batch = self.micro_batch * self.num_micro
        return (self.forward + self.backward + self.comm) / self.micro_batch + (
            self.allreduce / batch)

    def memory(self, in_flight: int) -> float:
        return self.static_bytes + in_flight * self.act_bytes_per_micro


class GroupCosts:
    """`CostModel.stage_cost` for a stage given as a group of SP nodes, from per-node sums
    cached across calls: the planner's fast path (it asks about the same nodes many times).

    Ensures: the same StageCost as `stage_cost` on the group's ops, up to float rounding.
    Nodes need `.ops`; a group's nodes must be disjoint.
    """

    def __init__(self, model: CostModel):
        self.model = model
        self._time: dict = {}  # (id(node), local samples) -> (forward, backward)
        self._static: dict = {}  # id(node) -> (params, output bytes per sample)
        self._outside: dict = {}  # id(node) -> ([(neighbor op, bytes)] leaving it, total)
        self._members: dict = {}  # id(node) -> set of ops
        self._prefixes: dict = {}  # (id(node), t) -> node; kept alive so ids stay unique

    def prefix(self, node, t: int):
        """The series node of `node`'s children ..t-1 (the child itself when t == 1), made once
        so the planner's id-keyed caches see one object."""
        key = (id(node), t)
        if key not in self._prefixes:
            kept = node.children[:t]
            self._prefixes[key] = kept[0] if t == 1 else type(node)(
                "series", tuple(op for child in kept for op in child.ops), kept)
        return self._prefixes[key]

    def _ops(self, node) -> set:
        members = self._members.get(id(node))
        if members is None:
            members = self._members[id(node)] = set(node.ops)
        return members

    def times(self, node, local: float) -> tuple[float, float]:
        key = (id(node), local)
        times = self._time.get(key)
        if times is None:
            model = self.model
            times = self._time[key] = (sum(model.forward_time(op, local) for op in node.ops),
                                       sum(model.backward_time(op, local) for op in node.ops))
        return times

    def _boundary(self, node) -> tuple[list[tuple[str, float]], float]:
        """Edges (neighbor op, per-sample bytes) from `node`'s ops to ops outside it, and their
        total bytes."""
        boundary = self._outside.get(id(node))
        if boundary is None:
            inside = self._ops(node)
            edges = [(neighbor, nbytes) for op in node.ops
                     for neighbor, nbytes in self.model.neighbors[op]
                     if nbytes > 0 and neighbor not in inside]
            boundary = self._outside[id(node)] = (edges, sum(nbytes for _, nbytes in edges))
        return boundary

    def stage_cost(self, nodes, degree: int, micro_batch: int, num_micro: int) -> StageCost:
        model, machine = self.model, self.model.machine
        local = micro_batch / degree
        fwd = bwd = params = out_bytes = size = 0.0
        count = 0
        for node in nodes:
            f, b = self.times(node, local)
            fwd, bwd = fwd + f, bwd + b
            static = self._static.get(id(node))
            if static is None:
                static = self._static[id(node)] = (
                    sum(model.ops[op].params for op in node.ops),
                    sum(model.ops[op].out_bytes for op in node.ops))
            params, out_bytes = params + static[0], out_bytes + static[1]
            edges, nbytes = self._boundary(node)
            count, size = count + len(edges), size + nbytes
        if len(nodes) > 1:  # edges between the group's nodes stay inside the stage
            inside = set().union(*(self._ops(node) for node in nodes))
            for node in nodes:
                for neighbor, nbytes in self._boundary(node)[0]:
                    if neighbor in inside:
                        count, size = count - 1, size - nbytes
        comm = 2 * (count * machine.link_latency + size * local / machine.link_bandwidth)
        allreduce = machine.allreduce_time(params * ACT_BYTES_PER_ELEMENT, degree)
        return StageCost(fwd, bwd, comm, allreduce, params * STATE_BYTES_PER_PARAM,
                         out_bytes * local, micro_batch, num_micro)
