"""The superoptimizer's search: enumerate (in parallel, within a time budget), size, verify and
rank µGraphs for one reference IR graph; results cached on disk (cache.py re-verifies an entry
before it is used, and a failed one is searched again with a note).

    >>> result = search(get_workload("rmsnorm_matmul:small"), budget_s=10)
    >>> result.best_est_time_us < result.baseline_est_time_us
    True

Work split: the first kernel op's choices (a library op, or block inputs + schedule) are dealt
round-robin into tasks, for 1, 2, ... max_kernel_ops kernel ops (iterative deepening, so
single-kernel programs come first); a pool of worker processes runs the tasks, each returning
its cheapest programs (sized by tune.py, plus their split-reduction variants from split.py)
and its counts. The parent verifies candidates in
order of estimated time until `keep` are verified or the budget is spent. Workers ignore
Ctrl-C: the parent alone is interrupted and ends the pool, so no worker prints a traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import heapq
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from mlc.compiler.ir import Graph
from mlc.compiler.safe_io import check_number

from ..cost import estimate, load_gpu
from ..mugraph.serialize import mugraph_from_json, mugraph_to_json
from ..prune.space import TargetSpace
from ..prune.terms import ir_output_terms
from ..verify import lower_to_mugraph, verify_each
from .cache import cache_key, load_cached, store
from .enumerate import Counts, Enumerator, OutOfTime
from .generators import DEFAULT_CONFIG
from .result import Candidate, Failures, SearchResult
from .split import split_variants
from .tune import tune

__all__ = ["Candidate", "SearchResult", "cache_key", "run_tasks", "search", "split_tasks"]
ENUMERATION_SHARE = 0.7  # of the budget; the rest sizes and verifies what was found
KEEP_PER_TASK = 6  # cheapest programs a task sends back
TASKS_PER_WORKER = 4  # more tasks than workers balances uneven subtrees
PR_SET_PDEATHSIG = 1  # linux/prctl.h


# ---- worker side -----------------------------------------------------------------------------

_CONTEXT: dict = {}  # set in the parent before the pool forks; read by _run_task


def _run_task(task) -> tuple[Counts, list, bool, Failures]:
    """Enumerate one share of the first kernel op's choices; return counts, the cheapest
    sized programs as (est_time_us, µGraph JSON), whether the deadline cut it short, and the
    programs whose sizing or costing raised (dropped)."""
    kernel_ops, choices = task
    enumerator: Enumerator = _CONTEXT["enumerator"]
    reference, gpu = _CONTEXT["reference"], _CONTEXT["gpu"]
    enumerator.counts = Counts()
    best: list = []  # max-heap by time via negation: (-time, order, graph)
    timed_out, failures = False, Failures()
    try:
        order = 0
        for program in enumerator.run(choices, kernel_ops):
            try:
                sized = tune(program, reference, gpu)
                variants = split_variants(program, reference, enumerator.labels, gpu)
            except Exception as err:  # noqa: BLE001 - one program's bug drops it, counted
                failures.add("cost", err)
                continue
            for graph, time_us in ([sized] if sized else []) + variants:
                order += 1
                item = (-time_us, order, graph)
                if len(best) < KEEP_PER_TASK:
                    heapq.heappush(best, item)
                elif item > best[0]:
                    heapq.heapreplace(best, item)
    except OutOfTime:
        timed_out = True
    found = [(-t, mugraph_to_json(g)) for t, _, g in sorted(best, reverse=True)]
    return enumerator.counts, found, timed_out, failures


def split_tasks(choices: list, max_kernel_ops: int, workers: int) -> list:
    chunks = max(1, min(len(choices), workers * TASKS_PER_WORKER))
    return [(kernel_ops, choices[start::chunks]) for kernel_ops in range(1, max_kernel_ops + 1)
            for start in range(chunks)]


def run_tasks(tasks: list, workers: int, function=_run_task):
    """`function` over `tasks` in forked worker processes (in this one for a single worker),
    results in completion order; set _CONTEXT before calling, the workers inherit it."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    if method is None:  # spawned workers could not see _CONTEXT: run here
        yield from map(function, tasks)
        return
    # Forked children must never collect an inherited egglog EGraph: its destructor waits on
    # a rayon thread pool that only the parent has (a deadlock). Free pending garbage here,
    # then freeze what is left so the children's collector ignores it.
    gc.collect()
    gc.freeze()
    try:
        with _worker_pool(multiprocessing.get_context(method), workers) as pool:
            yield from pool.imap_unordered(function, tasks)
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _worker_pool(context, workers: int):
    """A pool whose workers ignore Ctrl-C: the parent alone gets the KeyboardInterrupt and
    terminates them (leaving the pool's `with`), so no worker prints a traceback.

    SIGINT stays blocked while the workers fork, so none can be hit before it ignores the
    signal; a Ctrl-C in that window stays pending in the parent and arrives on unblock."""
    blocked = _block_sigint()
    try:
        pool = context.Pool(workers, initializer=_quiet_worker, initargs=(os.getpid(),))
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    with pool:
        yield pool


def _block_sigint() -> bool:
    """Block SIGINT in this thread (where the platform allows); True when it was blocked."""
    if not hasattr(signal, "pthread_sigmask"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return True


def _quiet_worker(parent: int) -> None:
    """Pool initializer: ignore Ctrl-C (the parent handles it and terminates the pool) and,
    on Linux, die with the parent, so a killed parent leaves no worker behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM) on Linux; nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the pool's own shutdown still applies
        return
    if os.getppid() != parent:  # it died before the call: do as the signal would have
        os._exit(1)


# ---- the search --------------------------------------------------------------------------------

def search(reference: Graph, *, gpu="h100", budget_s: float = 60.0, max_kernel_ops: int = 1,
           max_block_ops: int = 7, seed: int = 0, workers: int | None = None,
           prune: bool = True, progress: Callable | None = None,
           cache_dir: str | Path | None = None, keep: int = 3) -> SearchResult:
    """The cheapest verified µGraph for `reference` found within `budget_s` seconds.

    gpu: a spec name or GpuSpec; workers: processes (default: all cores); prune=False turns
    abstract-expression pruning of prefixes off (complete programs are still matched by their
    terms, then verified); cache_dir: reuse and store results keyed by cache_key.
    """
    start = time.monotonic()
    check_number(budget_s, "search budget_s", low=0, low_open=True)  # NaN would never run out
    spec = load_gpu(gpu) if isinstance(gpu, str) else gpu
    workers = workers or os.cpu_count() or 1
    options = {"gpu": spec.name, "max_kernel_ops": max_kernel_ops,
               "max_block_ops": max_block_ops, "seed": seed, "prune": prune, "keep": keep}
    path = Path(cache_dir) / f"{cache_key(reference, options)}.json" if cache_dir else None
    notes: list[str] = []
    if path is not None and path.is_file():
        cached, why = load_cached(path, reference, spec, budget_s, seed)
        if cached is not None:
            return cached
        notes += [why] if why else []
    deadline = start + budget_s
    notify = progress or (lambda message="", **_: None)
    baseline = lower_to_mugraph(reference)
    baseline_time = estimate(baseline, spec).time_us
    space = TargetSpace(ir_output_terms(reference), timeout_s=min(15.0, max(0.5, budget_s / 5)))
    enumerator = Enumerator(reference, spec, space, max_kernel_ops=max_kernel_ops,
                            max_block_ops=max_block_ops, prune=prune, config=DEFAULT_CONFIG,
                            deadline=start + budget_s * ENUMERATION_SHARE)
    _CONTEXT.update(enumerator=enumerator, reference=reference, gpu=spec)
    tasks = split_tasks(enumerator.top_choices(), max_kernel_ops, workers)
    counts, found, exhausted, failures = Counts(), {}, False, Failures()
    try:  # closing: an exception here (Ctrl-C) ends the worker pool at once
        with contextlib.closing(run_tasks(tasks, workers)) as results:
            for done, (task_counts, task_found, timed_out, task_failures) in enumerate(
                    results, 1):
                counts.add(task_counts)
                failures.merge(task_failures)
                exhausted |= timed_out
                for time_us, doc in task_found:
                    found[json.dumps(doc, sort_keys=True)] = (time_us, doc)
                notify(f"{done}/{len(tasks)} tasks, {counts.visited} states, {len(found)} "
                       "found", done=done, total=len(tasks), enumerated=counts.visited)
    finally:
        _CONTEXT.clear()
    ranked = [found[text] for text in sorted(found, key=lambda text: (found[text][0], text))]
    candidates, exhausted = _verify(ranked, reference, seed, keep, deadline, exhausted, notify,
                                    failures)
    best = Candidate(baseline, baseline_time, False, "none")  # also when it beats them all
    if candidates and candidates[0].est_time_us <= baseline_time:
        best = candidates[0]
    result = SearchResult(best.graph, best.est_time_us, baseline_time, counts.visited,
                          counts.pruned, counts.complete, len(candidates), tuple(candidates),
                          time.monotonic() - start, exhausted,
                          verification=best.verification)
    if path is not None and not failures.count:  # a run with failures is not worth keeping
        notes += filter(None, [store(path, result, budget_s)])
    return dataclasses.replace(result, notes=tuple(notes + failures.note()),
                               failed=failures.count)


def _verify(ranked, reference, seed, keep, deadline, exhausted, notify, failures: Failures):
    """Verify the cheapest candidates, `keep` at a time (one verify_many call shares the
    reference's evaluations), until `keep` pass or time runs out. A candidate whose
    rebuilding or verification raises is dropped and counted in `failures`."""
    verified = []
    for start in range(0, len(ranked), keep):
        if len(verified) >= keep:
            break
        if time.monotonic() > deadline:
            exhausted = True
            break
        batch = ranked[start:start + keep]
        notify(f"verifying {len(batch)} candidate(s) from {batch[0][0]:.1f} µs")
        built = []
        for time_us, doc in batch:
            try:
                built.append((time_us, mugraph_from_json(doc)))
            except Exception as err:  # noqa: BLE001 - one bad candidate, counted
                failures.add("build", err)
        verdicts = verify_each([g for _, g in built], reference, seed=seed,
                               on_error=lambda err: failures.add("verify", err))
        for (time_us, graph), verdict in zip(built, verdicts):
            if verdict is not None and verdict.equivalent:
                verified.append(Candidate(graph, time_us, True))
    return verified[:keep], exhausted
