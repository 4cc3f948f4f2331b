"""`mlc optimize` as a pass: regions -> search (once per distinct region) -> MuGraphCall rewrite.

Requires a typed Graph. Ensures a Graph that computes the same outputs (every fused region is
either a verified search result or the region's own unfused lowering), plus one report row per
region, so `mlc run` on the artifact matches the original model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph
from mlc.compiler.safe_io import check_number

from .mugraph import MuGraph, mugraph_to_json
from .regions import Region, fuse_regions, select_regions

MAX_BUDGET_S = 7 * 24 * 3600.0  # a week: beyond it a budget is a typo, not a plan
MAX_KERNEL_OPS = 8
MAX_BLOCK_OPS = 16
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class OptimizeOptions:
    target: str = "h100"
    budget_s: float = 60.0
    max_kernel_ops: int = 1
    max_block_ops: int = 7
    max_region_nodes: int = 8
    max_region_matmuls: int = 2
    seed: int = 0
    workers: int | None = None
    cache_dir: str | None = None
    search: str = "symbolic"  # symbolic (one sGraph search per region structure) | concrete

    def __post_init__(self):
        """Refuse values that would hang the search or make it meaningless (a NaN budget
        never runs out; a negative op count or seed has no meaning)."""
        check_number(self.budget_s, "optimize budget_s (seconds)", low=0, low_open=True,
                     high=MAX_BUDGET_S)
        for name, high in (("max_kernel_ops", MAX_KERNEL_OPS), ("max_block_ops", MAX_BLOCK_OPS),
                           ("max_region_nodes", 64), ("max_region_matmuls", 16)):
            check_number(getattr(self, name), f"optimize {name}", low=1, high=high,
                         integer=True)
        check_number(self.seed, "optimize seed", low=0, high=MAX_SEED, integer=True)
        if self.workers is not None:
            check_number(self.workers, "optimize workers", low=1, high=1024, integer=True)
        if self.search not in ("symbolic", "concrete"):
            raise MlcError(f"optimize search {self.search!r}: expected symbolic or concrete")


@dataclass
class RegionResult:
    """What the search found for one distinct region (shared by its repeats)."""

    key: str
    regions: list[Region]
    best: MuGraph
    verified: bool  # the chosen µGraph passed the verifier (False: the unfused baseline)
    est_time_us: float
    baseline_est_time_us: float
    enumerated: int
    pruned: int
    verified_count: int
    search_seconds: float
    budget_exhausted: bool
    cached: bool = False  # reused from the search cache, not searched in this run
    mode: str = "concrete"  # the search that found it: symbolic | concrete
    verification: str = "none"  # the check the chosen µGraph passed: formal | probabilistic

    def row(self, index: int) -> dict:
        return {"kernel": f"region_{index}", "region": list(self.regions[0].nodes),
                "instances": len(self.regions), "verified": self.verified,
                "est_time_us": round(self.est_time_us, 3),
                "baseline_est_time_us": round(self.baseline_est_time_us, 3),
                "speedup": round(self.baseline_est_time_us / self.est_time_us, 3)
                if self.est_time_us else None,
                "candidates": {"enumerated": self.enumerated, "pruned": self.pruned,
                               "verified": self.verified_count},
                "search_seconds": round(self.search_seconds, 3),
                "budget_exhausted": self.budget_exhausted, "cached": self.cached,
                "search": self.mode, "verification": self.verification}


@dataclass
class OptimizeResult:
    graph: Graph
    results: list[RegionResult]
    notes: list[str] = field(default_factory=list)
    search_seconds: float = 0.0


def optimize_graph(graph: Graph, options: OptimizeOptions = OptimizeOptions(),
                   progress=None) -> OptimizeResult:
    """Search every distinct region within the budget and fuse the winners into the graph."""
    from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes

    from .search.driver import search
    from .symbolic.dims import SymbolicError
    from .symbolic.driver import search_symbolic

    start = time.perf_counter()
    graph = run_passes(graph, OPTIMIZE_PASSES)
    regions, notes = select_regions(graph, options.max_region_nodes,
                                    options.max_region_matmuls)
    groups: dict[str, list[Region]] = {}
    for region in regions:
        groups.setdefault(region.key, []).append(region)
    results = []
    checkpoints: dict = {}  # regions of one structure (any shapes) share a symbolic search
    for done, (key, members) in enumerate(groups.items()):
        remaining = options.budget_s - (time.perf_counter() - start)
        share = max(remaining / (len(groups) - done), 0.5)
        label = f"region {done + 1}/{len(groups)}"
        region_progress = None if progress is None else (
            lambda message="", _label=label, **kw: progress(f"{_label}: {message}", **kw))
        common = dict(gpu=options.target, budget_s=share,
                      max_kernel_ops=options.max_kernel_ops,
                      max_block_ops=options.max_block_ops, seed=options.seed,
                      workers=options.workers, cache_dir=options.cache_dir,
                      progress=region_progress)
        found = None
        if options.search == "symbolic":
            try:
                found = search_symbolic(members[0].reference, checkpoints=checkpoints, **common)
            except SymbolicError as err:
                notes.append(f"{label}: concrete search ({err})")
        if found is None:
            found = search(members[0].reference, **common)
        notes += [f"{label}: {note}" for note in found.notes]
        results.append(RegionResult(
            key, members, found.best, found.verified > 0 and found.best_est_time_us <
            found.baseline_est_time_us, found.best_est_time_us, found.baseline_est_time_us,
            found.enumerated, found.pruned, found.verified, found.search_seconds,
            found.budget_exhausted, found.cached, found.mode,
            found.verification if found.best_est_time_us < found.baseline_est_time_us
            else "none"))
    replacements = [(region, json.dumps(mugraph_to_json(result.best)))
                    for result in results for region in result.regions]
    fused = fuse_regions(graph, replacements) if replacements else graph
    return OptimizeResult(fused, results, notes, time.perf_counter() - start)
