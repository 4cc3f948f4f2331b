"""The graph-pipeline planner (GraphPipe Alg. 1) and the sequential-pipeline baseline.

Binary search on the target time per sample T; each probe runs a dynamic program over the
coarsened SP tree whose value is (fewest in-flight micro-batches at the sub-graph's source,
stage count). Series nodes are solved downstream first (a stage's in-flight count is one more
than its successor's); parallel nodes split the devices between branches, or group adjacent
branches into one stage. Data-parallel degrees are powers of two dividing the micro-batch;
every device is used; a stage fits the per-device memory limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from mlc.compiler.errors import MlcError

from .cost import CostModel
from .sp import SPNode, coarsen, units

INFEASIBLE = None


@dataclass
class Stage:
    ops: tuple[str, ...]
    degree: int


@dataclass
class PlanResult:
    """A planner's answer: stages (ops, data-parallel degree), micro-batch size, the target
    time per sample it met, and how long the search took."""

    planner: str
    stages: list[Stage]
    micro_batch: int
    batch: int
    target_tps: float
    search_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class _Probe:
    """One DP run for a fixed micro-batch b and target time per sample T."""

    def __init__(self, model: CostModel, devices: int, b: int, batch: int, target: float,
                 costs: dict | None = None):
        self.model, self.devices, self.b, self.target = model, devices, b, target
        self.num_micro = batch // b
        self.limit = model.machine.memory_bytes
        self.degrees = [p for p in (2**i for i in range(12)) if p <= devices and b % p == 0]
        self.memo: dict = {}
        self.costs: dict = {} if costs is None else costs  # shared by probes of one b

    def cost(self, key, ops, degree: int) -> tuple[float, float, float]:
        """(time per sample, static bytes, activation bytes per micro-batch), cached."""
        cost = self.costs.get((key, degree))
        if cost is None:
            ops = ops() if callable(ops) else ops
            full = self.model.stage_cost(ops, degree, self.b, self.num_micro)
            cost = self.costs[(key, degree)] = (full.time_per_sample(), full.static_bytes,
                                                full.act_bytes_per_micro)
        return cost

    def stage(self, key, ops, degree: int, in_flight: int) -> bool:
        """Is `ops` on `degree` devices a valid stage (meets T, fits memory)?"""
        tps, static, act = self.cost(key, ops, degree)
        return tps <= self.target and static + in_flight * act <= self.limit

    def too_big(self, key, ops, d: int) -> bool:
        """No degree <= d makes `ops` meet the target or hold its own state: larger ranges
        (supersets) cannot either, so range loops stop here."""
        bound = self.costs.get((key, "min", d))
        if bound is None:
            costs = [self.cost(key, ops, p) for p in self.degrees if p <= d]
            bound = self.costs[(key, "min", d)] = (min(c[0] for c in costs),
                                                   min(c[1] + c[2] for c in costs))
        return bound[0] > self.target or bound[1] > self.limit

    def solve(self, node: SPNode, d: int, k_after: int):
        """Best (in_flight, stages, [Stage...]) for `node` on exactly `d` devices, or None."""
        key = (id(node), d, k_after)
        if key not in self.memo:
            if node.kind in ("unit", "leaf"):
                self.memo[key] = self._base(node, node.ops, d, k_after)
            elif node.kind == "series":
                self.memo[key] = self._series(node, 0, d, k_after)
            else:
                self.memo[key] = self._parallel(node, 0, d, k_after)
        return self.memo[key]

    def _base(self, key, ops, d: int, k_after: int):
        if d not in self.degrees or not self.stage(key, ops, d, k_after + 1):
            return INFEASIBLE
        return (k_after + 1, 1, ("stage", ops, d))

    def _series(self, node: SPNode, j: int, d: int, k_after: int):
        """Children j.. of a series node on exactly d devices."""
        key = (id(node), "s", j, d, k_after)
        if key in self.memo:
            return self.memo[key]
        children, best = node.children, INFEASIBLE
        for end in range(j + 1, len(children) + 1):  # children j..end-1 as one stage
            def ops(j=j, end=end):
                return [op for c in children[j:end] for op in c.ops]
            if self.too_big((id(node), j, end), ops, d):
                break
            for p in self.degrees:
                if p > d or (end == len(children)) != (p == d):
                    continue
                rest = (k_after, 0, None) if end == len(children) else (
                    self._series(node, end, d - p, k_after))
                if rest is INFEASIBLE:
                    continue
                if self.stage((id(node), j, end), ops, p, rest[0] + 1):
                    best = _better(best, (rest[0] + 1, rest[1] + 1,
                                          ("then", ("stage", ops, p), rest[2])))
        if children[j].kind not in ("unit", "leaf"):  # recurse into child j
            last = j == len(children) - 1
            for dj in [d] if last else range(1, d):
                rest = (k_after, 0, None) if last else self._series(node, j + 1, d - dj, k_after)
                if rest is INFEASIBLE:
                    continue
                head = self.solve(children[j], dj, rest[0])
                if head is not INFEASIBLE:
                    best = _better(best, (head[0], head[1] + rest[1], ("then", head[2], rest[2])))
        if children[j].kind == "parallel" and j + 1 < len(children):
            best = _better(best, self._absorb(node, j, d, k_after))
        self.memo[key] = best
        return best

    def _absorb(self, node: SPNode, j: int, d: int, k_after: int):
        """Branches i0.. of the parallel child j join one stage with children j+1..end-1
        (GraphPipe's shared sink stage); branches ..i0-1 are planned on their own."""
        children, best = node.children, INFEASIBLE
        branches = children[j].children
        if d < 2:
            return INFEASIBLE
        for i0 in range(1, len(branches)):
            for end in range(j + 2, len(children) + 1):
                def ops(i0=i0, end=end):
                    return ([op for c in branches[i0:] for op in c.ops]
                            + [op for c in children[j + 1:end] for op in c.ops])
                key = (id(node), "a", j, i0, end)
                if self.too_big(key, ops, d - 1):
                    break
                for p in self.degrees:
                    for d_rest in [0] if end == len(children) else range(1, d - p):
                        d_par = d - p - d_rest
                        if d_par < 1:
                            continue
                        rest = (k_after, 0, None) if end == len(children) else self._series(
                            node, end, d_rest, k_after)
                        if rest is INFEASIBLE or not self.stage(key, ops, p, rest[0] + 1):
                            continue
                        par = self._parallel(children[j], 0, d_par, rest[0] + 1, i0)
                        if par is not INFEASIBLE:
                            best = _better(best, (max(par[0], rest[0] + 1), par[1] + 1 + rest[1],
                                                  ("then", par[2], ("then", ("stage", ops, p),
                                                                    rest[2]))))
        return best

    def _parallel(self, node: SPNode, i: int, d: int, k_after: int, stop: int | None = None):
        """Branches i..stop-1 of a parallel node on exactly d devices: max in-flight, summed
        stages."""
        stop = len(node.children) if stop is None else stop
        key = (id(node), "p", i, d, k_after, stop)
        if key in self.memo:
            return self.memo[key]
        children, best = node.children, INFEASIBLE
        remaining = stop - i
        for end in range(i + 1, stop + 1):  # branches i..end-1 grouped as one stage
            def ops(i=i, end=end):
                return [op for c in children[i:end] for op in c.ops]
            if self.too_big((id(node), "g", i, end), ops, d):
                break
            for p in self.degrees:
                if p > d or (end == stop) != (p == d):
                    continue
                rest = (0, 0, None) if end == stop else self._parallel(
                    node, end, d - p, k_after, stop)
                if rest is not INFEASIBLE and self.stage((id(node), "g", i, end), ops, p,
                                                         k_after + 1):
                    best = _better(best, (max(rest[0], k_after + 1), rest[1] + 1,
                                          ("then", ("stage", ops, p), rest[2])))
        if children[i].kind not in ("unit", "leaf"):  # recurse into branch i
            last = remaining == 1
            for di in [d] if last else range(1, d):
                rest = (0, 0, None) if last else self._parallel(node, i + 1, d - di, k_after, stop)
                if rest is INFEASIBLE:
                    continue
                head = self.solve(children[i], di, k_after)
                if head is not INFEASIBLE:
                    best = _better(best, (max(head[0], rest[0]), head[1] + rest[1],
                                          ("then", head[2], rest[2])))
        self.memo[key] = best
        return best


def _stages(choice) -> list[Stage]:
    """Flatten the DP's choice tree: None, ("stage", ops, degree) or ("then", a, b)."""
    if choice is None:
        return []
    if choice[0] == "stage":
        ops = choice[1]() if callable(choice[1]) else choice[1]
        return [Stage(tuple(ops), choice[2])]
    return _stages(choice[1]) + _stages(choice[2])


def _better(a, b):
    if a is INFEASIBLE:
        return b
    if b is INFEASIBLE:
        return a
    return b if (b[0], b[1]) < (a[0], a[1]) else a


def micro_batch_sizes(batch: int, devices: int) -> list[int]:
    """Powers of two dividing the batch: the candidate uniform micro-batch sizes."""
    # between devices/4 and 2 x devices micro-batches: fewer leave a deep pipeline idle, more
    # rarely pay (and each size costs a full binary search)
    smallest, largest = max(1, batch // (2 * devices)), max(1, batch // max(1, devices // 4))
    return [b for b in (2**i for i in range(20))
            if smallest <= b <= min(largest, batch) and batch % b == 0]


def _max_tps(model: CostModel, stages: list[Stage], b: int, batch: int) -> float:
    return max(model.stage_cost(s.ops, s.degree, b, batch // b).time_per_sample()
               for s in stages)


def _search(model: CostModel, tree: SPNode, devices: int, b: int, batch: int,
            max_stages: int | None, steps: int = 10):
    """Binary search (geometric) on T for one micro-batch size; the best stages or None."""
    costs: dict = {}

    def probe(target: float):
        result = _Probe(model, devices, b, batch, target, costs).solve(tree, devices, 0)
        if result is INFEASIBLE or (max_stages and result[1] > max_stages):
            return None
        return _stages(result[2])

    best = probe(math.inf)
    if best is None:
        return None
    hi = _max_tps(model, best, b, batch)
    lo = hi / 1e3  # a sure lower bound would need per-sample costs at every micro-batch
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        stages = probe(mid)
        if stages is None:
            lo = mid
        else:
            best, hi = stages, _max_tps(model, stages, b, batch)
        if hi / lo < 1.02:
            break
    return best


def plan(model: CostModel, tree: SPNode, devices: int, batch: int, planner: str,
         micro_batch: int | None = None, max_stages: int | None = None,
         evaluate=None) -> PlanResult:
    """Plan `tree` (already coarsened) over `devices`; `evaluate(result) -> samples/s` picks
    the micro-batch size (default: the DP's bottleneck estimate).

    Requires: batch divisible by micro_batch when given. Ensures: stages partition the ops and
    exactly `devices` devices; raises MlcError when nothing fits memory.
    """
    start = time.perf_counter()
    sizes = [micro_batch] if micro_batch else micro_batch_sizes(batch, devices)
    best, best_score = None, -math.inf
    for b in sizes:
        stages = _search(model, tree, devices, b, batch, max_stages)
        if stages is None:
            continue
        result = PlanResult(planner, stages, b, batch, _max_tps(model, stages, b, batch))
        score = evaluate(result) if evaluate else 1.0 / result.target_tps
        if score > best_score:
            best, best_score = result, score
    if best is None:
        from .diagnose import memory_error

        raise MlcError(memory_error(model, tree, devices, batch, sizes[0]))
    best.search_seconds = time.perf_counter() - start
    return best


def planning_tree(model: CostModel, tree: SPNode, devices: int) -> SPNode:
    """Coarsen so the DP sees a bounded number of units (about 2 per device of work)."""
    def weight(ops):
        return sum(model.forward_time(op, 1) for op in ops)
    return coarsen(tree, weight, weight(tree.ops) / (2 * devices))


def sequential_tree(tree: SPNode) -> SPNode:
    """The baseline's view: the same units as one chain in topological order."""
    chain = units(tree)
    return SPNode("series", tree.ops, tuple(chain)) if len(chain) > 1 else chain[0]

