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

from .cost import CostModel, GroupCosts
from .sp import SPNode, coarsen, units

INFEASIBLE = None
TOO_BIG = "too big"
# A schedule lists every micro-batch of every stage and the simulator walks them all: more
# than this many micro-batches per iteration is a typo (or hours of planning), not a plan.
MAX_MICRO_BATCHES = 4096


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
                 costs: dict | None = None, groups: GroupCosts | None = None,
                 known: dict | None = None):
        self.model, self.devices, self.b, self.target = model, devices, b, target
        self.num_micro = batch // b
        self.limit = model.machine.memory_bytes
        self.degrees = [p for p in (2**i for i in range(12)) if p <= devices and b % p == 0]
        self.known: dict = {} if known is None else known  # (target, answer) by key, all probes
        self.costs: dict = {} if costs is None else costs  # shared by probes of one b
        self.groups = groups or GroupCosts(model)  # shared by every probe

    def cost(self, key, nodes, degree: int) -> tuple[float, float, float]:
        """(time per sample, static bytes, activation bytes per micro-batch) of the SP nodes
        `nodes` (or a callable giving them) as one stage, cached."""
        cost = self.costs.get((key, degree))
        if cost is None:
            nodes = nodes() if callable(nodes) else nodes
            full = self.groups.stage_cost(nodes, degree, self.b, self.num_micro)
            cost = self.costs[(key, degree)] = (full.time_per_sample(), full.static_bytes,
                                                full.act_bytes_per_micro)
        return cost

    def work(self, node: SPNode, start: int, end: int) -> float:
        """One-device seconds per sample of children start..end-1 of `node` at micro-batch b:
        they need at least work / T devices (see `lower_bound_tps`)."""
        prefix = self.costs.get(("prefix", id(node)))
        if prefix is None:
            prefix = [0.0]
            for child in node.children:
                fwd, bwd = self.groups.times(child, self.b)
                prefix.append(prefix[-1] + (fwd + bwd) / self.b)
            self.costs[("prefix", id(node))] = prefix
        return prefix[end] - prefix[start]

    def too_much_work(self, node: SPNode, start: int, end: int, devices: int) -> bool:
        return self.work(node, start, end) > devices * self.target

    def candidate(self, key, ops, degree: int):
        """The cost of `ops` on `degree` devices if it meets T and holds one micro-batch, else
        None: checked before solving what follows the stage, which it may spare."""
        cost = self.cost(key, ops, degree)
        return cost if cost[0] <= self.target and cost[1] + cost[2] <= self.limit else None

    def fits(self, cost, in_flight: int) -> bool:
        return cost[1] + in_flight * cost[2] <= self.limit

    def recall(self, key):
        """(True, answer) when this or an earlier probe (same micro-batch) settles `key`.

        Monotone in T: infeasible at T0 >= T stays infeasible; an optimum found at T0 whose
        stages all meet T is still optimal at T <= T0 (the options only shrink). An answer of
        this probe (T0 = T) always settles its key."""
        earlier = self.known.get(key)
        if earlier is not None:
            target, answer = earlier
            if self.target <= target and (answer is INFEASIBLE or answer[3] <= self.target):
                return True, answer
        return False, None

    def remember(self, key, answer):
        self.known[key] = (self.target, answer)
        return answer

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
        """Best (in_flight, stages, choice, max stage time per sample) for `node` on exactly
        `d` devices, or None."""
        if node.kind in ("unit", "leaf"):
            return self._base(id(node), (node,), d, k_after)
        if node.kind == "series":
            return self._series(node, 0, d, k_after)
        return self._parallel(node, 0, d, k_after)

    def _base(self, key, ops, d: int, k_after: int):
        cost = self.candidate(key, ops, d) if d in self.degrees else None
        if cost is None or not self.fits(cost, k_after + 1):
            return INFEASIBLE
        return (k_after + 1, 1, ("stage", ops, d), cost[0])

    def _series(self, node: SPNode, j: int, d: int, k_after: int):
        """Children j.. of a series node on exactly d devices."""
        key = (id(node), "s", j, d, k_after)
        settled, answer = self.recall(key)
        if settled:
            return answer
        children, best = node.children, INFEASIBLE
        count = len(children)
        if self.too_much_work(node, j, count, d):
            return self.remember(key, INFEASIBLE)
        for end in range(j + 1, count + 1):  # children j..end-1 as one stage
            def ops(j=j, end=end):
                return children[j:end]
            if end < count and self.too_much_work(node, end, count, d - 1):
                continue
            if self.too_big((id(node), j, end), ops, d):
                break
            for p in self.degrees:
                if p > d or (end == count) != (p == d) or (
                        end < count and self.too_much_work(node, end, count, d - p)):
                    continue
                cost = self.candidate((id(node), j, end), ops, p)
                if cost is None:
                    continue
                rest = (k_after, 0, None, 0.0) if end == len(children) else (
                    self._series(node, end, d - p, k_after))
                if rest is not INFEASIBLE and self.fits(cost, rest[0] + 1):
                    choice = ("then", ("stage", ops, p), rest[2])
                    best = _better(best, (rest[0] + 1, rest[1] + 1, choice, max(cost[0], rest[3])))
        if children[j].kind not in ("unit", "leaf"):  # recurse into child j
            last = j == len(children) - 1
            for dj in [d] if last else range(1, d):
                if not last and self.too_much_work(node, j + 1, count, d - dj):
                    break
                rest = (k_after, 0, None, 0.0) if last else self._series(
                    node, j + 1, d - dj, k_after)
                if rest is INFEASIBLE:
                    continue
                head = self.solve(children[j], dj, rest[0])
                if head is not INFEASIBLE:
                    best = _better(best, (head[0], head[1] + rest[1], ("then", head[2], rest[2]),
                                          max(head[3], rest[3])))
        if children[j].kind == "parallel" and j + 1 < len(children):
            best = _better(best, self._absorb(node, j, d, k_after))
        return self.remember(key, best)

    def _absorb(self, node: SPNode, j: int, d: int, k_after: int):
        """The parallel child j's sink stage (GraphPipe's join): children j+1..end-1 share one
        stage with branches i0+1.. and with branch i0 from its child t on (all of it when
        t = 0). Branch i0's children ..t-1 and branches ..i0-1 are planned on their own.
        Absorbing only a branch's tail lets a small join ride on a branch's last stage instead
        of taking a device of its own."""
        children, best = node.children, INFEASIBLE
        branches = children[j].children
        if d < 2:
            return INFEASIBLE
        for i0 in range(len(branches)):
            branch = branches[i0]
            tails = range(len(branch.children) - 1, 0, -1) if branch.kind == "series" else []
            for t in list(tails) + ([0] if i0 else []):  # smallest join stage first
                grew = self._absorb_at(node, j, i0, t, d, k_after)
                if grew is TOO_BIG:  # a longer tail is bigger still
                    break
                best = _better(best, grew)
        return best

    def _absorb_at(self, node: SPNode, j: int, i0: int, t: int, d: int, k_after: int):
        """One (i0, t) of `_absorb`; TOO_BIG when even the smallest join stage is."""
        children, best = node.children, INFEASIBLE
        branches = children[j].children
        head = self.groups.prefix(branches[i0], t) if t else None
        tail = branches[i0].children[t:] if t else (branches[i0],)
        for end in range(j + 2, len(children) + 1):
            def ops(i0=i0, end=end):
                return tail + branches[i0 + 1:] + children[j + 1:end]
            key = (id(node), "a", j, i0, t, end)
            if self.too_big(key, ops, d - 1):
                return TOO_BIG if end == j + 2 else best
            for p in self.degrees:
                cost = self.candidate(key, ops, p) if p < d else None
                if cost is None:
                    continue
                for d_rest in [0] if end == len(children) else range(1, d - p):
                    rest = (k_after, 0, None, 0.0) if end == len(children) else (
                        self._series(node, end, d_rest, k_after))
                    if rest is INFEASIBLE or not self.fits(cost, rest[0] + 1):
                        continue
                    k_join, left = rest[0] + 1, d - p - d_rest
                    for d_head in range(1, left + 1) if t else [0]:
                        d_par = left - d_head
                        if (d_par < 1) == (i0 > 0):
                            continue
                        par = self._parallel(children[j], 0, d_par, k_join, i0) if i0 else (
                            0, 0, None, 0.0)
                        pre = self.solve(head, d_head, k_join) if t else (0, 0, None, 0.0)
                        if par is INFEASIBLE or pre is INFEASIBLE:
                            continue
                        choice = ("then", par[2], ("then", pre[2], ("then", ("stage", ops, p),
                                                                        rest[2])))
                        best = _better(best, (max(par[0], pre[0], k_join),
                                              par[1] + pre[1] + 1 + rest[1], choice,
                                              max(par[3], pre[3], cost[0], rest[3])))
        return best

    def _parallel(self, node: SPNode, i: int, d: int, k_after: int, stop: int | None = None):
        """Branches i..stop-1 of a parallel node on exactly d devices: max in-flight, summed
        stages."""
        stop = len(node.children) if stop is None else stop
        key = (id(node), "p", i, d, k_after, stop)
        settled, answer = self.recall(key)
        if settled:
            return answer
        children, best = node.children, INFEASIBLE
        remaining = stop - i
        if self.too_much_work(node, i, stop, d):
            return self.remember(key, INFEASIBLE)
        for end in range(i + 1, stop + 1):  # branches i..end-1 grouped as one stage
            def ops(i=i, end=end):
                return children[i:end]
            if self.too_big((id(node), "g", i, end), ops, d):
                break
            for p in self.degrees:
                if p > d or (end == stop) != (p == d) or (
                        end < stop and self.too_much_work(node, end, stop, d - p)):
                    continue
                cost = self.candidate((id(node), "g", i, end), ops, p)
                if cost is None or not self.fits(cost, k_after + 1):
                    continue
                rest = (0, 0, None, 0.0) if end == stop else self._parallel(
                    node, end, d - p, k_after, stop)
                if rest is not INFEASIBLE:
                    choice = ("then", ("stage", ops, p), rest[2])
                    best = _better(best, (max(rest[0], k_after + 1), rest[1] + 1, choice,
                                          max(cost[0], rest[3])))
        if children[i].kind not in ("unit", "leaf"):  # recurse into branch i
            last = remaining == 1
            for di in [d] if last else range(1, d):
                if not last and self.too_much_work(node, i + 1, stop, d - di):
                    break
                rest = (0, 0, None, 0.0) if last else self._parallel(
                    node, i + 1, d - di, k_after, stop)
                if rest is INFEASIBLE:
                    continue
                head = self.solve(children[i], di, k_after)
                if head is not INFEASIBLE:
                    best = _better(best, (max(head[0], rest[0]), head[1] + rest[1],
                                          ("then", head[2], rest[2]), max(head[3], rest[3])))
        return self.remember(key, best)


def _stages(choice) -> list[Stage]:
    """Flatten the DP's choice tree: None, ("stage", ops, degree) or ("then", a, b)."""
    if choice is None:
        return []
    if choice[0] == "stage":
        nodes = choice[1]() if callable(choice[1]) else choice[1]
        return [Stage(tuple(op for node in nodes for op in node.ops), choice[2])]
    return _stages(choice[1]) + _stages(choice[2])


def _better(a, b):
    if a is INFEASIBLE:
        return b
    if b is INFEASIBLE:
        return a
    return b if (b[0], b[1]) < (a[0], a[1]) else a


def micro_batch_sizes(batch: int, devices: int) -> list[int]:
    """Powers of two dividing the batch: the candidate uniform micro-batch sizes.

    >>> micro_batch_sizes(1000, 3)  # no power of two in the window: the nearest below it
    [8]
    """
    # between devices/4 and 2 x devices micro-batches: fewer leave a deep pipeline idle, more
    # rarely pay (and each size costs a full binary search)
    smallest, largest = max(1, batch // (2 * devices)), max(1, batch // max(1, devices // 4))
    dividing = [b for b in (2**i for i in range(batch.bit_length())) if batch % b == 0]
    in_window = [b for b in dividing if smallest <= b <= largest]
    in_window = in_window or [max(b for b in dividing if b <= largest)]
    return [b for b in in_window if batch // b <= MAX_MICRO_BATCHES]


def _max_tps(model: CostModel, stages: list[Stage], b: int, batch: int) -> float:
    return max(model.stage_cost(s.ops, s.degree, b, batch // b).time_per_sample()
               for s in stages)


def lower_bound_tps(model: CostModel, ops, devices: int, b: int) -> float:
    """A time per sample no plan of `ops` on `devices` devices can beat at micro-batch b.

    A stage on p devices costs p * t(b/p) >= t(b) device-seconds per micro-batch (fixed costs
    repeat on every replica), so the stages' device-seconds per sample sum to at least the
    ops' one-device work W, and the bottleneck stage takes at least W / devices."""
    work = sum(model.forward_time(op, b) + model.backward_time(op, b) for op in ops)
    return work / b / devices


def _search(model: CostModel, tree: SPNode, devices: int, b: int, batch: int,
            max_stages: int | None, steps: int = 12, groups: GroupCosts | None = None
            ) -> list[Stage] | None:
    """The plan at the smallest feasible target T (to 2%) for one micro-batch size, or None
    when nothing fits.

    Grows T geometrically from a lower bound until a probe succeeds, then bisects: probes with
    a tight T prune most ranges, where an unbounded first probe would visit them all."""
    costs: dict = {}  # keyed by node ids: `groups` keeps every node they name alive
    known: dict = {}
    groups = groups or GroupCosts(model)

    def probe(target: float):
        result = _Probe(model, devices, b, batch, target, costs, groups, known).solve(
            tree, devices, 0)
        if result is INFEASIBLE or (max_stages and result[1] > max_stages):
            return None
        return _stages(result[2])

    lo = bound = lower_bound_tps(model, tree.ops, devices, b) * 0.999
    target, best = lo, None
    while best is None:
        target *= 1.5
        if target > bound * 1e4:  # nothing fits memory, whatever the target
            return probe(math.inf)
        best = probe(target)
        if best is None:
            lo = target
    hi = _max_tps(model, best, b, batch)
    for _ in range(steps):
        if hi / lo < 1.02:
            break
        mid = math.sqrt(lo * hi)
        stages = probe(mid)
        if stages is None:
            lo = mid
        else:
            best, hi = stages, _max_tps(model, stages, b, batch)
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
    if not sizes or batch // sizes[0] > MAX_MICRO_BATCHES:
        smallest = next((b for b in (2**i for i in range(batch.bit_length()))
                         if batch % b == 0 and batch // b <= MAX_MICRO_BATCHES), None)
        fix = (f"use --micro-batch {smallest} or more" if smallest
               else "use a smaller batch, or one with a larger power-of-two factor")
        raise MlcError(f"batch {batch} would make more than {MAX_MICRO_BATCHES} micro-batches "
                       f"(the most a schedule is planned for); {fix}")
    best, best_score = None, -math.inf
    groups = GroupCosts(model)
    for b in sizes:
        stages = _search(model, tree, devices, b, batch, max_stages, groups=groups)
        if stages is not None:
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

