"""Stage-1 results as JSON (stage1.json in a plan directory), so `--replan` reruns only stage 2.

A cached model is reused when its request shape and SLO match and the hardware fingerprint
(every GPU type's performance figures and efficiencies, not prices or counts) and the
efficiency factors are unchanged.
"""

from __future__ import annotations

import dataclasses

from .catalog import GpuType
from .perf import Efficiency, ReplicaConfig, ReplicaPerf, Stage
from .stage1 import Candidate, Stage1Result

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
    config = ReplicaConfig(tuple(Stage(gpu, int(tp), int(layers))
                                 for gpu, tp, layers in doc["stages"]))
    return Candidate(model, config, ReplicaPerf(**doc["perf"]))


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


def cached_results(doc: dict | None, catalog: dict[str, GpuType], eff: Efficiency
                   ) -> dict[str, Stage1Result]:
    """The reusable stage-1 results in a cache document ({} when the hardware changed)."""
    if not doc or doc.get("format_version") != CACHE_FORMAT_VERSION:
        return {}
    if doc.get("hardware") != hardware_fingerprint(catalog) \
            or doc.get("efficiency") != dataclasses.asdict(eff):
        return {}
    results = {}
    for name, entry in doc.get("models", {}).items():
        results[name] = Stage1Result(
            model=name, shape_key=tuple(entry["shape_key"]),
            candidates=[_column(name, c) for c in entry["candidates"]],
            homogeneous=[_column(name, c) for c in entry["homogeneous"]], all_fitting=[],
            enumerated=entry["enumerated"], fitting=entry["fitting"], seconds=0.0,
            failures=entry.get("failures", {}))
    return results
