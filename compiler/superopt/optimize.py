"""`mlc optimize` as a pass: regions -> search (once per distinct region) -> MuGraphCall rewrite.

Requires a typed Graph. Ensures a Graph that computes the same outputs (every fused region is
either a verified search result or the region's own unfused lowering), plus one report row per
region, so `mlc run` on the artifact matches the original model.

Robustness: a candidate whose building, interpreting, verifying, costing or rendering raises is
dropped and counted (the row's `candidates_failed`, the first error in the notes); a region
whose whole search raises keeps its unfused lowering, with a note. Only MlcError (a refusal
the user must act on) and interrupts end the run.
"""

from __future__ import annotations

import gc
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
    failed: int = 0  # candidates dropped because building, checking or rendering one raised
    measured_us: float | None = None  # the chosen µGraph's compiled kernel, timed (CPU target)
    baseline_measured_us: float | None = None  # the unfused lowering's, timed likewise

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
                "search": self.mode, "verification": self.verification,
                "candidates_failed": self.failed,
                "measured_us": _rounded(self.measured_us),
                "baseline_measured_us": _rounded(self.baseline_measured_us),
                "cost_model_error": _model_error(self.est_time_us, self.measured_us)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _model_error(estimate: float, measured: float | None) -> float | None:
    """(estimate - measurement) / measurement: the cost model's relative error here."""
    return None if not measured else round((estimate - measured) / measured, 3)


@dataclass
class OptimizeResult:
    graph: Graph
    results: list[RegionResult]
    notes: list[str] = field(default_factory=list)
    search_seconds: float = 0.0
    source: Graph | None = None  # the canonicalized graph before fusion (what regions cut)


def optimize_graph(graph: Graph, options: OptimizeOptions = OptimizeOptions(),
                   progress=None) -> OptimizeResult:
    """Search every distinct region within the budget and fuse the winners into the graph."""
    # egglog e-graphs may only be freed on the thread that made them: collect garbage here,
    # between regions, never from the progress bar's thread
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _optimize_graph(graph, options, progress)
    finally:
        if enabled:
            gc.enable()


def _optimize_graph(graph: Graph, options: OptimizeOptions, progress) -> OptimizeResult:
    from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes

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
        region_notes: list[str] = []
        try:
            found = _search_region(members[0].reference, options.search, common, checkpoints,
                                   region_notes)
        except MlcError:
            raise  # a refusal the user must see (an unwritable cache, a bad option)
        except Exception as err:  # noqa: BLE001 - one region's failure keeps it unfused
            found = None
            region_notes.append(f"search failed ({type(err).__name__}: {err}); the region "
                                "keeps its unfused lowering")
        gc.collect()  # free this search's e-graphs here: egglog refuses another thread's drop
        result = _region_result(key, members, found, options.target, region_notes)
        notes += [f"{label}: {note}" for note in region_notes]
        if result is not None:
            results.append(result)
    # On the CPU target a region that kept its unfused lowering stays as IR ops: the torch
    # executor's library calls beat the lowering's one-kernel-per-op C++ (measured); a GPU
    # artifact carries every region as a kernel.
    replacements = [(region, json.dumps(mugraph_to_json(result.best)))
                    for result in results for region in result.regions
                    if result.verified or options.target != "cpu"]
    fused = fuse_regions(graph, replacements) if replacements else graph
    return OptimizeResult(fused, results, notes, time.perf_counter() - start, graph)


def _search_region(reference: Graph, mode: str, common: dict, checkpoints: dict,
                   notes: list[str]):
    """The search's result for one region: symbolic when asked (concrete when the region does
    not rebind to symbolic sizes), else concrete; its notes appended to `notes`."""
    from .search.driver import search
    from .symbolic.dims import SymbolicError
    from .symbolic.driver import search_symbolic

    found = None
    if mode == "symbolic":
        try:
            found = search_symbolic(reference, checkpoints=checkpoints, **common)
        except SymbolicError as err:
            notes.append(f"concrete search ({err})")
    if found is None:
        found = search(reference, **common)
    notes += list(found.notes)
    return found


def _region_result(key: str, members: list[Region], found, target: str,
                   notes: list[str]) -> RegionResult | None:
    """The region's row: the cheapest verified candidate that also renders (Triton and CUDA),
    else the unfused lowering (`found` None: the search failed). None when even the unfused
    lowering cannot be built or rendered: the region's nodes then stay as they are."""
    from .cost import estimate, load_gpu
    from .verify import lower_to_mugraph

    reference = members[0].reference
    failed = found.failed if found is not None else 1
    try:
        baseline = lower_to_mugraph(reference)
        baseline_us = estimate(baseline, load_gpu(target)).time_us
    except Exception as err:  # noqa: BLE001 - reported; the region is left as it is
        notes.append(f"the unfused lowering failed ({type(err).__name__}: {err}); the "
                     "region's nodes are left as they are")
        return None
    winners = [] if found is None else [c for c in found.candidates if c.verified and
                                        c.est_time_us < found.baseline_est_time_us]
    renderable = []
    for candidate in sorted(winners, key=lambda c: c.est_time_us):
        why = render_problem(candidate.graph, target)
        if why is None:
            renderable.append(candidate)
        else:
            failed += 1
            notes.append(f"a verified candidate was dropped: it does not render ({why})")
    why = render_problem(baseline, target)
    if why is not None and not renderable:
        notes.append(f"the unfused lowering does not render ({why}); the region's nodes are "
                     "left as they are")
        return None
    measured = measure_choices(renderable, baseline, target, notes) if why is None else {}
    stats = (0, 0, 0, 0.0, False) if found is None else (
        found.enumerated, found.pruned, found.verified, found.search_seconds,
        found.budget_exhausted)
    extra = dict(cached=found.cached, mode=found.mode) if found is not None else {}
    base_measured = measured.get(id(baseline))
    for candidate in renderable:
        mine = measured.get(id(candidate))
        if measured and (mine is None or (base_measured is not None and mine >= base_measured)):
            continue  # measured no faster than the unfused lowering (or not measured)
        if measured and any(measured.get(id(c), float("inf")) < mine for c in renderable):
            continue  # another verified candidate measured faster
        return RegionResult(key, members, candidate.graph, True, candidate.est_time_us,
                            baseline_us, *stats, **extra, verification=candidate.verification,
                            failed=failed, measured_us=mine, baseline_measured_us=base_measured)
    return RegionResult(key, members, baseline, False, baseline_us, baseline_us, *stats,
                        **extra, verification="none", failed=failed, measured_us=base_measured,
                        baseline_measured_us=base_measured)


MEASURED_CANDIDATES = 3  # verified candidates timed per region on the CPU target


def measure_choices(candidates, baseline: MuGraph, target: str, notes: list[str]) -> dict:
    """On the CPU target: the measured median µs of the best few candidates (by estimate) and
    of the unfused lowering, keyed by id(); {} elsewhere (no device to time on here) or when
    the kernels cannot be built (no compiler), with a note."""
    if target != "cpu":
        return {}
    from .measure import time_mugraph
    timed = {}
    try:
        for candidate in candidates[:MEASURED_CANDIDATES]:
            timed[id(candidate)] = time_mugraph(candidate.graph)
        timed[id(baseline)] = time_mugraph(baseline)
    except MlcError as err:
        notes.append(f"kernels not timed ({err}); ranked by the cost model's estimate")
        return {}
    return timed


def render_problem(graph: MuGraph, target: str = "h100") -> str | None:
    """Why the target's kernel renderers refuse `graph` (None: they render it: C++ for the CPU
    target, Triton and CUDA for a GPU), so the artifact never holds a kernel that cannot be
    written."""
    from mlc.kernels.cpu import render_c
    from mlc.kernels.cuda import render_cuda
    from mlc.kernels.triton import render_triton

    try:
        if target == "cpu":
            render_c(graph)
        else:
            render_triton(graph)
            render_cuda(graph)
    except Exception as err:  # noqa: BLE001 - the caller drops the candidate and counts it
        return f"{type(err).__name__}: {err}"
    return None
