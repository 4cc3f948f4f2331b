"""Stage-1 results as JSON (stage1.json in a plan directory), so `--replan` reruns only stage 2.

A cached model is reused when its request shape and SLO match and the hardware fingerprint
(every GPU type's performance figures and efficiencies, not prices or counts) and the
efficiency factors are unchanged, and only after `recheck` re-estimates every cached column:
the file is the user's, so an edited or corrupted entry is rerun (with a note), never trusted.
"""

from __future__ import annotations

import dataclasses

from ..models import ModelConfig
from .catalog import GpuType
from .perf import (
    Efficiency,
    ReplicaConfig,
    ReplicaPerf,
    Stage,
    Workload,
    check_layout,
    estimate,
)
from .stage1 import Candidate, Stage1Result, prune_dominated

CACHE_FORMAT_VERSION = 1
_PERFORMANCE_FIELDS = ("memory_bytes", "bandwidth", "flops", "bf16", "link_bandwidth",
                       "link_latency", "bandwidth_efficiency", "flops_efficiency")


def hardware_fingerprint(catalog: dict[str, GpuType]) -> dict:
    return {name: {f: getattr(gpu, f) for f in _PERFORMANCE_FIELDS}
            for name, gpu in sorted(catalog.items())}


def _column_doc(column: Candidate) -> dict:
    return {"stages": [[s.gpu, s.tp, s.layers] for s in column.config.stages],
            "perf": dataclasses.asdict(column.perf)}


def _column(model: str, doc: dict) -> Candidate:
    """A cached column; TypeError / ValueError / KeyError when the document is malformed."""
    stages = []
    for gpu, tp, layers in doc["stages"]:
        if not isinstance(gpu, str) or any(isinstance(v, bool) or not isinstance(v, int)
                                           for v in (tp, layers)):
            raise ValueError(f"stage {[gpu, tp, layers]!r} is not [gpu, tp, layers]")
        stages.append(Stage(gpu, tp, layers))
    if not stages:
        raise ValueError("a configuration without stages")
    return Candidate(model, ReplicaConfig(tuple(stages)), ReplicaPerf(**doc["perf"]))


def stage1_document(results: dict[str, Stage1Result], catalog: dict[str, GpuType],
                    eff: Efficiency) -> dict:
    return {"format_version": CACHE_FORMAT_VERSION,
            "hardware": hardware_fingerprint(catalog), "efficiency": dataclasses.asdict(eff),
            "models": {name: {"shape_key": list(r.shape_key), "enumerated": r.enumerated,
                              "fitting": r.fitting, "seconds": r.seconds,
                              "failures": r.failures,
                              "candidates": [_column_doc(c) for c in r.candidates],
                              "homogeneous": [_column_doc(c) for c in r.homogeneous]}
                       for name, r in results.items()}}


def cached_results(doc: dict | None, catalog: dict[str, GpuType], eff: Efficiency,
                   notes: list[str] | None = None) -> dict[str, Stage1Result]:
    """The reusable stage-1 results in a cache document ({} when the hardware changed). A
    malformed model entry is skipped (stage 1 reruns for it) with a note appended to `notes`;
    callers re-check what is returned with `recheck` before trusting it."""
    if not isinstance(doc, dict) or doc.get("format_version") != CACHE_FORMAT_VERSION:
        return {}
    if doc.get("hardware") != hardware_fingerprint(catalog) \
            or doc.get("efficiency") != dataclasses.asdict(eff):
        return {}
    models = doc.get("models")
    results = {}
    for name, entry in (models.items() if isinstance(models, dict) else ()):
        try:
            results[name] = _result(name, entry)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            if notes is not None:
                notes.append(f"cached stage 1 of {name} is malformed ({type(err).__name__}: "
                             f"{err}); stage 1 was rerun")
    return results


def _result(name: str, entry: dict) -> Stage1Result:
    return Stage1Result(
        model=name, shape_key=tuple(entry["shape_key"]),
        candidates=[_column(name, c) for c in entry["candidates"]],
        homogeneous=[_column(name, c) for c in entry["homogeneous"]], all_fitting=[],
        enumerated=int(entry["enumerated"]), fitting=int(entry["fitting"]), seconds=0.0,
        failures=dict(entry.get("failures", {})))


def recheck(result: Stage1Result, model: ModelConfig, workload: Workload,
            catalog: dict[str, GpuType], eff: Efficiency) -> str:
    """Why a cached stage-1 result cannot be trusted ("" when it can): every cached column is
    re-estimated (cheap: one roofline per column) and must fit, match its stored estimate
    exactly, and not be dominated by another cached column."""
    for column in result.candidates + result.homogeneous:
        unknown = [s.gpu for s in column.config.stages if s.gpu not in catalog]
        if unknown:
            return f"column {column.config.key} uses unknown GPU {unknown[0]!r}"
        if check_layout(model, column.config) or not column.perf.fits:
            return f"column {column.config.key} is not a valid configuration"
        if estimate(model, column.config, workload, catalog, eff) != column.perf:
            return f"column {column.config.key} does not match its re-computed estimate"
    gpus = sorted(catalog)
    if len(prune_dominated(result.candidates, gpus)) != len(result.candidates):
        return "it keeps dominated columns"
    return ""
