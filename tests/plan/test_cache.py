"""Stage-1 cache: a re-plan reuses stage 1 when only prices, counts or rates change, and reruns
it when the request shape or the hardware's performance figures change."""

from __future__ import annotations

import dataclasses
import json

from mlc.compiler.plan.coral.cache import stage1_document
from mlc.compiler.plan.coral.catalog import load_catalog, with_availability
from mlc.compiler.plan.coral.perf import DEFAULT_EFFICIENCY, Workload
from mlc.compiler.plan.coral.planner import run_stage1_all
from mlc.compiler.plan.models import load_model_config

GPUS = ["l4", "l40s"]


def test_cache_round_trip_and_invalidation():
    catalog = load_catalog(only=GPUS)
    models = {m: load_model_config(m) for m in ("mistral-7b", "qwen2.5-7b")}
    demand = {m: Workload(3.0, 256, 128) for m in models}
    first, reused = run_stage1_all(models, demand, catalog, DEFAULT_EFFICIENCY, mixed=False)
    assert reused == []
    doc = json.loads(json.dumps(stage1_document(first, catalog, DEFAULT_EFFICIENCY)))

    cheaper = {g: dataclasses.replace(gpu, price_per_hour=0.1)
               for g, gpu in with_availability(catalog, {"l4": 1}).items()}
    new_rate = {**demand, "mistral-7b": Workload(9.0, 256, 128)}
    again, reused = run_stage1_all(models, new_rate, cheaper, DEFAULT_EFFICIENCY, doc)
    assert sorted(reused) == sorted(models)
    for name in models:
        assert [(c.config.key, c.perf.throughput) for c in again[name].candidates] == \
            [(c.config.key, c.perf.throughput) for c in first[name].candidates]

    new_shape = {**demand, "qwen2.5-7b": Workload(3.0, 2048, 128)}
    _, reused = run_stage1_all(models, new_shape, catalog, DEFAULT_EFFICIENCY, doc, mixed=False)
    assert reused == ["mistral-7b"]

    slower = {**catalog, "l4": dataclasses.replace(catalog["l4"], bandwidth_efficiency=0.5)}
    _, reused = run_stage1_all(models, demand, slower, DEFAULT_EFFICIENCY, doc, mixed=False)
    assert reused == []
