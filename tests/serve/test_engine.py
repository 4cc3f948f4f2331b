"""Continuous batching with chunked prefill against plain greedy generation, the serving loop,
and trace parsing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mlc.compiler.errors import MlcError
from mlc.runtime.serve.engine import Request, ServingEngine
from mlc.runtime.serve.finetune import FinetuneJob
from mlc.runtime.serve.loop import serve_trace
from mlc.runtime.serve.model import LlamaModel, Segment
from mlc.runtime.serve.profile import backward_layer_seconds, profile_latency
from mlc.runtime.serve.trace import load_finetune_data, load_requests

REQUESTS = [Request("a", [1, 2, 3, 4, 5, 6, 7, 8, 9], 5), Request("b", [40, 41], 7),
            Request("c", list(range(100, 130)), 3, arrival=0.01)]


def greedy_reference(model: LlamaModel, prompt: list[int], count: int) -> list[int]:
    """Greedy tokens by re-running the whole sequence without a cache for every token."""
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(count):
            logits = model.forward_segments([Segment("x", tokens)], {"x": model.new_cache()})
            tokens.append(int(logits[-1].argmax()))
    return tokens[len(prompt):]


def fcfs_planner(budget: int):
    """Decode everything running, prefill FCFS in chunks, finetune in what is left."""
    def planner(engine: ServingEngine):
        decode = [rid for rid, _ in engine.decode_ready()]
        left, prefill = budget - len(decode), []
        for rid, remaining, _ in engine.prefill_waiting():
            if left > 0:
                prefill.append((rid, min(remaining, left)))
                left -= prefill[-1][1]
        job = engine.finetune
        return SimpleNamespace(decode=decode, prefill=prefill, finetune_tokens=max(left, 0),
                               backward_layers=1 if job and job.backward_left else 0)
    return planner


def test_continuous_batching_matches_greedy_generation():
    model = LlamaModel.from_config("tiny-llama", seed=5)
    engine = ServingEngine(model)
    outcome = serve_trace(engine, REQUESTS, fcfs_planner(budget=8))
    assert outcome.stopped_by == "done" and not engine.active
    for request in REQUESTS:
        expected = greedy_reference(model, request.prompt, request.max_new_tokens)
        assert engine.finished[request.id].output == expected
    # the 30-token prompt needed several 8-token chunks alongside decodes
    assert max(r.prefill_tokens for r in outcome.iterations) <= 8
    assert sum(r.prefill_tokens for r in outcome.iterations) == 41


def test_serving_loop_records_latencies_and_runs_finetuning():
    model = LlamaModel.from_config("tiny-llama", seed=5, lora_rank=4)
    job = FinetuneJob(model, [list(range(20)), list(range(50, 62))], lr=1e-2)
    engine = ServingEngine(model, job)
    outcome = serve_trace(engine, REQUESTS, fcfs_planner(budget=12))
    assert job.done and len(job.steps) == 2
    assert outcome.totals()["finetune_tokens"] == 19 + 11
    for state in engine.finished.values():
        latency = state.latencies()
        assert 0 <= latency["ttft"] <= latency["e2e"]
        assert latency["output_tokens"] == state.request.max_new_tokens


def test_step_rejects_a_plan_the_engine_cannot_run():
    engine = ServingEngine(LlamaModel.from_config("tiny-llama"))
    engine.add_request(Request("a", [1, 2, 3], 2))
    with pytest.raises(ValueError, match="not running decode"):
        engine.step(SimpleNamespace(decode=["a"], prefill=[], finetune_tokens=0,
                                    backward_layers=0))
    with pytest.raises(ValueError, match="prefills 4 tokens"):
        engine.step(SimpleNamespace(decode=[], prefill=[("a", 4)], finetune_tokens=0,
                                    backward_layers=0))


def test_traces_parse_text_and_tokens(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"id": "r1", "text": "hé", "max_new_tokens": 2}\n\n'
                     '{"id": "r2", "prompt": [3, 4], "max_new_tokens": 1, "arrival": 0.5}\n')
    assert load_requests(trace, 256) == [Request("r1", [104, 195, 169], 2),
                                         Request("r2", [3, 4], 1, 0.5)]
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "ab"}\n{"tokens": [1, 2, 3]}\n')
    assert load_finetune_data(data, 256) == [[97, 98], [1, 2, 3]]


@pytest.mark.parametrize("line,message", [
    ("not json", "not valid JSON"),
    ('{"id": "x", "prompt": [1], "max_new_tokens": 0}', "max_new_tokens"),
    ('{"id": "x", "prompt": [1, 999], "max_new_tokens": 2}', "token id 999"),
    ('{"id": "x", "max_new_tokens": 2}', "'prompt'"),
    ('{"id": "r1", "prompt": [1], "max_new_tokens": 2}', "unique 'id'"),
])
def test_malformed_trace_lines_name_file_and_line(tmp_path, line, message):
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"id": "r1", "prompt": [1], "max_new_tokens": 2}\n' + line + "\n")
    with pytest.raises(MlcError, match=f"trace.jsonl:2: .*{message}"):
        load_requests(trace, 256)


def test_profiling_samples_and_backward_cost_leave_the_adapter_alone():
    model = LlamaModel.from_config("tiny-llama", lora_rank=4)
    before = [p.detach().clone() for p in model.lora_parameters()]
    samples = profile_latency(model, token_counts=(1, 4), contexts=(0, 8), repeats=1)
    assert [(t, c) for t, c, _ in samples] == [(1, 1), (4, 4), (1, 9), (4, 12)]
    assert all(seconds > 0 for *_, seconds in samples)
    assert backward_layer_seconds(model, sequence_tokens=8, repeats=1) > 0
    assert all(p.grad is None for p in model.lora_parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.lora_parameters()))
