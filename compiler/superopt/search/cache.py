"""The concrete search's on-disk cache: one JSON file per (reference structure, options).

A cached result is never trusted as it stands: the file may be stale, damaged or edited. On
load every candidate is verified again against the reference at this region's shape (the
probabilistic check: milliseconds at region sizes), the unfused baseline is lowered afresh
rather than read, estimates are recomputed, and the best is chosen again as the search would.
An entry that does not parse or fails a check is discarded (the caller searches again), with
a note saying why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from mlc.compiler.errors import MlcError
from mlc.compiler.ir import Graph
from mlc.compiler.ir.serialize import graph_to_json
from mlc.compiler.safe_io import check_number, dump_json, read_json

from ..constants import constant_digest
from ..cost import estimate
from ..mugraph.ops import MuGraphError
from ..verify import lower_to_mugraph, verify_many
from .result import Candidate, SearchResult, result_from_json

CACHE_VERSION = 3  # 2: one shared-memory rule (fp32 slots); 3: constants (scales, eps) in keys


def cache_key(reference: Graph, options: dict) -> str:
    """sha256 of the reference's structure and shapes (not its name) and the options."""
    doc = graph_to_json(reference)
    doc.pop("name", None)
    constants = {name: constant_digest(w) for name, w in reference.weights.items()}
    text = json.dumps({"version": CACHE_VERSION, "graph": doc, "options": options,
                       "constants": constants},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_cached(path: Path, reference: Graph, spec, budget_s: float,
                seed: int) -> tuple[SearchResult | None, str | None]:
    """(the re-verified cached result, None), or (None, why it was discarded), or (None, None)
    when there is nothing usable to report (no entry, or one cut short by a smaller budget)."""
    try:
        doc = read_json(path, "search cache entry")
        if not isinstance(doc, dict) or set(doc) != {"budget_s", "budget_exhausted", "result"}:
            raise MlcError(f"{path}: not a search cache entry")
        stored_budget = check_number(doc["budget_s"], f"{path}: budget_s", low=0)
        if doc["budget_exhausted"] is True and stored_budget < budget_s:
            return None, None  # a bigger budget may find more
        result = result_from_json(doc["result"], str(path))
    except (MlcError, MuGraphError) as err:
        return None, f"search cache entry does not parse ({err}); searched again"
    return recheck(result, reference, spec, seed, path.name)


def recheck(result: SearchResult, reference: Graph, spec, seed: int,
            label: str) -> tuple[SearchResult | None, str | None]:
    """Verify every cached candidate again at the reference's shape and rebuild the result
    from what passed: (result, None), or (None, why) when any candidate fails."""
    graphs = [c.graph for c in result.candidates]
    try:  # a candidate that no longer fits (limits, shared-memory rule) is stale, not a bug
        verdicts = verify_many(graphs, reference, seed=seed) if graphs else []
        times = [estimate(graph, spec).time_us for graph in graphs]
    except MuGraphError as err:
        return None, f"cached result {label} does not fit this region ({err}); searched again"
    for index, verdict in enumerate(verdicts):
        if not verdict.equivalent:
            return None, (f"cached result {label}: candidate {index} failed re-verification "
                          f"(output {verdict.output!r} differs in the {verdict.stage} check); "
                          "discarded and searched again")
    baseline = lower_to_mugraph(reference)
    baseline_time = estimate(baseline, spec).time_us
    candidates = tuple(Candidate(graph, time_us, True, "probabilistic")
                       for graph, time_us in zip(graphs, times))
    best = Candidate(baseline, baseline_time, False, "none")  # the search's own rule
    cheapest = min(candidates, key=lambda c: c.est_time_us, default=None)
    if cheapest is not None and cheapest.est_time_us <= baseline_time:
        best = cheapest
    return dataclasses.replace(
        result, best=dataclasses.replace(best.graph, name=reference.name),
        best_est_time_us=best.est_time_us, baseline_est_time_us=baseline_time,
        verified=len(candidates), candidates=candidates, verification=best.verification,
        mode="concrete", cached=True), None


def store(path: Path, result: SearchResult, budget_s: float) -> str | None:
    """Write the entry atomically; a note instead of an error when the cache cannot be
    written (the result stands, it is only not kept)."""
    from mlc.compiler.artifact import atomic_file

    try:
        text = dump_json({"budget_s": budget_s, "budget_exhausted": result.budget_exhausted,
                          "result": result.to_json()})
        with atomic_file(path) as tmp:
            tmp.write_text(text)
    except (MlcError, OSError) as err:
        return f"search cache not written ({err})"
    return None
