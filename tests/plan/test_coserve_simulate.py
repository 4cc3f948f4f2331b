"""The co-serving simulation: SLO kept and more finetuning than separate clusters at low load,
every finished request produced its tokens, finetuning yields to inference as load grows."""

from __future__ import annotations

import pytest

from mlc.compiler.plan.coserve.compare import compare, dedicated_finetune_tokens_per_s, run_group
from mlc.compiler.plan.coserve.latency import FinetuneShape
from mlc.compiler.plan.coserve.planner import Workload, build_setup, choose_replica
from mlc.compiler.plan.coserve.simulate import run_replica
from mlc.compiler.plan.coserve.traces import generate_trace

DURATION = 20.0


def _setup(rate: float, gpus: int, slo: float = 0.045):
    trace = generate_trace(rate, DURATION, "poisson", seed=0)
    finetune = FinetuneShape()
    replica, memory = choose_replica("llama-3.1-8b", "a100-80gb", gpus, None, finetune, 8192)
    setup, _ = build_setup(replica, memory, Workload.of(trace, DURATION), gpus, slo, finetune)
    return setup, trace


@pytest.fixture(scope="module")
def low_rate():
    setup, trace = _setup(2.0, 2)
    return setup, trace, compare(setup, trace, 2, DURATION)


def test_low_rate_coserve_meets_the_slo_and_out_finetunes_separate(low_rate):
    _, _, report = low_rate
    assert report["coserve"]["slo_attainment"] >= 0.95
    assert report["coserve"]["finetune_tokens_per_s"] \
        > report["separate"]["finetune_tokens_per_s"] > 0
    assert report["separate"]["inference_replicas"] == 1
    assert report["separate"]["finetune_replicas"] == 1
    for name in ("coserve", "separate", "temporal"):
        assert 0 <= report[name]["slo_attainment"] <= 1
        assert report[name]["inference_tokens_per_s"] > 0


def test_every_finished_request_produced_its_output_tokens(low_rate):
    setup, trace, report = low_rate
    for name in ("coserve", "separate", "temporal"):
        assert report[name]["conserved"]
        assert report[name]["finished"] == report[name]["requests"] == len(trace)
    # inference only, long drain: every output token of the trace is produced once
    outcome = run_replica(setup, trace, "inference", duration=1000.0)
    assert outcome.output_tokens == sum(r.max_new_tokens for r in trace)


def test_idle_replica_finetunes_near_a_dedicated_one():
    setup, _ = _setup(1.0, 1)
    idle = run_replica(setup, [], "coserve", DURATION)
    assert idle.requests == 0 and idle.finished == 0
    dedicated = dedicated_finetune_tokens_per_s(setup)
    assert 0.5 * dedicated < idle.finetune_tokens / DURATION <= 1.05 * dedicated


def test_finetuning_yields_as_load_grows():
    throughput = []
    for rate in (1.0, 8.0, 30.0):
        setup, trace = _setup(rate, 1)
        outcome = run_group(setup, trace, 1, "coserve", DURATION)
        throughput.append(outcome.finetune_tokens / DURATION)
        assert outcome.conserved
    assert throughput[0] > throughput[1] > throughput[2]
