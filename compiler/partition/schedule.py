"""The stage DAG, 1F1B generalized to it, and an event simulator of one training iteration.

In-flight rule (uniform micro-batch, GraphPipe §6): inflight(sink) = 1 and
inflight(s) = 1 + max over successors t of inflight(t), i.e. the longest path to a sink.
A stage runs min(inflight, M) forwards, then alternates backward and forward, then drains.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cost import CostModel


def stage_edges(stage_ops: list[tuple[str, ...]], succ) -> list[tuple[int, int]]:
    """Pairs (i, j) of stages with an op edge from stage i to stage j (i != j)."""
    owner = {op: i for i, ops in enumerate(stage_ops) for op in ops}
    return sorted({(owner[a], owner[b]) for a in owner for b in succ[a]
                   if owner[a] != owner[b]})


def topological_stages(stage_ops: list[tuple[str, ...]], succ) -> list[tuple[str, ...]]:
    """Stages reordered so every edge goes from a lower to a higher id (Kahn's algorithm).

    Requires: the stage graph is acyclic (stages convex). Raises ValueError otherwise.
    """
    edges = stage_edges(stage_ops, succ)
    indegree = [0] * len(stage_ops)
    for _, j in edges:
        indegree[j] += 1
    ready = [i for i, n in enumerate(indegree) if n == 0]
    order = []
    while ready:
        i = min(ready)
        ready.remove(i)
        order.append(i)
        for a, b in edges:
            if a == i:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    if len(order) != len(stage_ops):
        raise ValueError("stage graph has a cycle: some stage is not convex")
    return [stage_ops[i] for i in order]


def in_flight(num_stages: int, edges: list[tuple[int, int]]) -> list[int]:
    """inflight(s) = 1 + max over successors (1 at sinks); stage ids topologically ordered."""
    counts = [1] * num_stages
    for s in reversed(range(num_stages)):
        succs = [b for a, b in edges if a == s]
        if succs:
            counts[s] = 1 + max(counts[t] for t in succs)
    return counts


def one_f_one_b(in_flight_count: int, num_micro: int) -> list[str]:
    """The per-stage task order: warm-up forwards, steady 1B1F, cool-down backwards."""
    warm = min(in_flight_count, num_micro)
    order = [f"F{m}" for m in range(warm)]
    for m in range(num_micro - warm):
        order += [f"B{m}", f"F{m + warm}"]
    order += [f"B{m}" for m in range(num_micro - warm, num_micro)]
    return order


@dataclass
class Simulation:
    """One iteration: per-stage task intervals (kind, micro, start, end), iteration seconds,
    throughput (samples/s) and peak memory per stage (bytes per device)."""

    tasks: list[list[tuple[str, int, float, float]]]
    iteration_seconds: float
    throughput: float
    peak_memory: list[float]


def simulate(model: CostModel, stages: list[tuple[str, ...]], degrees: list[int],
             edges: list[tuple[int, int]], micro_batch: int, batch: int,
             orders: list[list[str]]) -> Simulation:
    """Run each stage's task order; a forward waits for its predecessors' forwards (plus the
    link), a backward for its successors' backwards; all-reduce ends the iteration."""
    num_micro = batch // micro_batch
    costs = [model.stage_cost(ops, p, micro_batch, num_micro) for ops, p in zip(stages, degrees)]
    preds = {s: [a for a, b in edges if b == s] for s in range(len(stages))}
    succs = {s: [b for a, b in edges if a == s] for s in range(len(stages))}
    link = {(a, b): _link_time(model, stages[a], stages[b], micro_batch / degrees[a])
            for a, b in edges}
    done: dict[tuple[str, int, int], float] = {}
    position, clock = [0] * len(stages), [0.0] * len(stages)
    tasks: list[list] = [[] for _ in stages]
    live, peak = [0] * len(stages), [c.memory(0) for c in costs]
    while any(position[s] < len(orders[s]) for s in range(len(stages))):
        progressed = False
        for s, order in enumerate(orders):
            while position[s] < len(order):
                kind, micro = order[position[s]][0], int(order[position[s]][1:])
                deps = ([("F", p, micro) for p in preds[s]] if kind == "F"
                        else [("B", t, micro) for t in succs[s]] + [("F", s, micro)])
                if any(dep not in done for dep in deps):
                    break
                ready = max([clock[s]] + [done[(k, o, micro)] + (
                    link[(o, s)] if k == "F" and o != s else
                    link[(s, o)] if k == "B" else 0.0) for k, o, _ in deps])
                cost = costs[s]
                length = cost.forward if kind == "F" else cost.backward
                end = ready + length
                done[(kind, s, micro)] = clock[s] = end
                tasks[s].append((kind, micro, ready, end))
                live[s] += 1 if kind == "F" else -1
                peak[s] = max(peak[s], cost.memory(live[s]))
                position[s] += 1
                progressed = True
        if not progressed:
            raise ValueError("schedule deadlocks: task orders wait on each other")
    finish = max(clock[s] + costs[s].allreduce for s in range(len(stages)))
    return Simulation(tasks, finish, batch / finish, peak)


def _link_time(model: CostModel, src: tuple[str, ...], dst: tuple[str, ...],
               samples: float) -> float:
    members, targets = set(src), set(dst)
    size = sum(v for (a, b), v in model.edges.items() if a in members and b in targets)
    return model.machine.link_time(size * samples)


def gantt_svg(sim: Simulation, title: str, width: int = 900) -> str:
    """A Gantt chart of one simulated iteration: one row per stage, forwards blue, backwards
    orange, micro-batch numbers inside the boxes."""
    row, left, top = 22, 70, 30
    scale = (width - left - 10) / max(sim.iteration_seconds, 1e-12)
    height = top + row * len(sim.tasks) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="monospace" font-size="10">',
             f'<text x="{left}" y="18" font-size="12">{_escape(title)}</text>']
    for s, intervals in enumerate(sim.tasks):
        y = top + s * row
        parts.append(f'<text x="4" y="{y + 14}">stage {s}</text>')
        for kind, micro, start, end in intervals:
            x, w = left + start * scale, max((end - start) * scale, 0.5)
            color = "#4a7bd0" if kind == "F" else "#e8913a"
            parts.append(f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{row - 4}" '
                         f'fill="{color}" stroke="white" stroke-width="0.5"/>')
            if w > 12:
                parts.append(f'<text x="{x + 2:.2f}" y="{y + 13}" fill="white">'
                             f'{kind}{micro}</text>')
    axis_y = top + row * len(sim.tasks) + 14
    parts.append(f'<text x="{left}" y="{axis_y}">0 .. {sim.iteration_seconds * 1e3:.3f} ms, '
                 f'{sim.throughput:.1f} samples/s</text></svg>')
    return "\n".join(parts) + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
