"""The co-serving roofline and memory split against hand-computed numbers, and generated and
file traces: rates, burstiness, determinism, and errors naming file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlc.compiler.errors import MlcError
from mlc.compiler.plan.coserve.latency import FinetuneShape, Replica, gpu_type
from mlc.compiler.plan.coserve.traces import (
    OUTPUT_MEAN,
    PROMPT_MEAN,
    Request,
    generate_trace,
    read_trace,
    write_trace,
)
from mlc.compiler.plan.models import load_model_config

LLAMA = load_model_config("llama-3.1-8b")
A100 = gpu_type("a100-80gb")
BANDWIDTH = 2.04e12 * 0.75  # coral's default bandwidth efficiency
FLOPS = 312e12 * 0.55
GiB = 2**30


def test_roofline_matches_hand_computed_seconds():
    replica = Replica(LLAMA, A100, tp=1)
    # one decode token: 16.06 GB of weights read once, plus the 2 ms step overhead
    assert replica.seconds(1, 0) == pytest.approx(16.06e9 / BANDWIDTH + 0.002)
    # 512 tokens: compute-bound, 2 * 8.03e9 FLOPs per token
    assert replica.seconds(512, 0) == pytest.approx(2 * 8.03e9 * 512 / FLOPS + 0.002)
    # 100k context entries: 128 KiB of KV each read once
    read = 16.06e9 + 100_000 * 131072
    assert replica.seconds(1, 100_000) == pytest.approx(read / BANDWIDTH + 0.002)
    # tensor parallelism halves the work and adds all-reduces
    two = Replica(LLAMA, A100, tp=2)
    assert replica.seconds(512, 0) / 2 < two.seconds(512, 0) < replica.seconds(512, 0)


def test_memory_split_and_finetuning_costs_match_hand_computed_bytes():
    replica = Replica(LLAMA, A100, tp=1)
    memory = replica.memory(FinetuneShape(lora_rank=16, sequence_tokens=1024), 8192)
    kept = 1024 * 32 * (4096 + 2 * 4096) * 2  # LoRA inputs and query buffer per layer
    workspace = 1024 * (4096 + 2 * 14336) * 2
    assert memory.finetune_activations == kept + workspace
    lora_params = 32 * 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2)
    assert memory.lora_state == lora_params * 16
    usable = 80 * GiB * 0.9 - 1 * GiB - 16.06e9 - kept - workspace - lora_params * 16
    assert memory.kv_tokens == int(usable / 131072)
    # one layer's backward over 1024 tokens: 2x its forward plus the adapter's gradients
    assert replica.backward_layer_tokens(FinetuneShape()) == pytest.approx(1024 / 32 * 2,
                                                                           rel=0.01)


def test_model_that_does_not_fit_says_by_how_much():
    replica = Replica(load_model_config("llama-3.1-70b"), A100, tp=1)
    with pytest.raises(MlcError, match=r"short by 6\d\.\d GiB"):
        replica.memory(FinetuneShape(), 8192)
    Replica(load_model_config("llama-3.1-70b"), A100, tp=4).memory(FinetuneShape(), 8192)


def test_fitted_latency_model_bounds_the_roofline_on_its_range():
    replica = Replica(LLAMA, A100, tp=1)
    latency = replica.latency_model(512, 50_000)
    rng = np.random.default_rng(0)
    tokens, context = rng.integers(1, 513, 300), rng.integers(0, 50_001, 300)
    truth = replica.seconds(tokens, context)
    predicted = latency.predict(tokens, context)
    assert np.all(predicted >= truth - 1e-12)
    # a plane cannot follow the roofline's max() corner: ~11 ms at worst, ~6 ms on average
    assert np.max(predicted - truth) < 0.012 and np.mean(predicted - truth) < 0.007


@pytest.mark.parametrize("kind", ["poisson", "bursty"])
def test_generated_traces_have_the_rate_and_shape(kind):
    trace = generate_trace(rate=20.0, duration=300.0, kind=kind, seed=3)
    assert len(trace) / 300.0 == pytest.approx(20.0, rel=0.1)
    gaps = np.diff([r.arrival for r in trace])
    cv = gaps.std() / gaps.mean()
    assert (cv > 1.5) if kind == "bursty" else cv == pytest.approx(1.0, abs=0.1)
    assert np.mean([r.prompt_tokens for r in trace]) == pytest.approx(PROMPT_MEAN, rel=0.15)
    assert np.mean([r.max_new_tokens for r in trace]) == pytest.approx(OUTPUT_MEAN, rel=0.15)
    assert trace == generate_trace(rate=20.0, duration=300.0, kind=kind, seed=3)
    assert trace != generate_trace(rate=20.0, duration=300.0, kind=kind, seed=4)


def test_trace_files_round_trip_and_accept_prompt_text(tmp_path):
    trace = generate_trace(rate=5.0, duration=10.0, seed=1)
    write_trace(trace, tmp_path / "t.jsonl")
    assert read_trace(tmp_path / "t.jsonl") == trace
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"id": 7, "prompt": "x" * 40, "max_new_tokens": 3, "arrival": 1.5}) + "\n")
    assert read_trace(tmp_path / "p.jsonl") == [Request("7", 1.5, 10, 3)]


@pytest.mark.parametrize("line, message", [
    ("{not json", r"bad.jsonl:2: not valid JSON"),
    ('{"id": "a", "arrival": 0}', r"bad.jsonl:2: missing field\(s\) max_new_tokens, "
                                  r"prompt_tokens \(or prompt\)"),
    ('{"id": "a", "prompt_tokens": 0, "max_new_tokens": 4, "arrival": 0}',
     r"bad.jsonl:2: prompt_tokens: 0 must be at least 1"),
    ('{"id": "a", "prompt_tokens": 5, "max_new_tokens": 4, "arrival": -1}',
     r"bad.jsonl:2: arrival \(seconds\): -1 must be at least 0"),
    ("[1, 2]", r"bad.jsonl:2: expected a JSON object"),
])
def test_malformed_trace_lines_are_named(tmp_path, line, message):
    good = json.dumps({"id": "ok", "prompt_tokens": 5, "max_new_tokens": 4, "arrival": 0})
    (tmp_path / "bad.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(MlcError, match=message):
        read_trace(tmp_path / "bad.jsonl")


def test_module_examples_run():
    import doctest

    from mlc.compiler.plan.coserve import latency, scheduler, traces
    for module in (latency, scheduler, traces):
        assert doctest.testmod(module).failed == 0
