"""The hybrid token scheduler's invariants over random pending work, and the latency fit."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.plan.coserve.scheduler import (
    IterationPlan,
    LatencyModel,
    Pending,
    plan_iteration,
)

LATENCY = LatencyModel(base=0.012, per_token=6e-5, per_context=4e-8)
SLO = 0.045
LAYER_TOKENS = 64.0


def _random_pending(rng: np.random.Generator, decodes: int) -> Pending:
    forward = int(rng.integers(0, 1025))
    return Pending(
        decode=[(f"d{i}", int(rng.integers(1, 4000))) for i in range(decodes)],
        prefill=[(f"p{i}", int(rng.integers(1, 2000)), int(rng.integers(0, 500)))
                 for i in range(int(rng.integers(0, 5)))],
        finetune_forward=forward,
        finetune_context=int(rng.integers(0, 1024)) if forward else 0,
        finetune_backward_layers=0 if forward else int(rng.integers(0, 33)))


def _work(plan: IterationPlan) -> float:
    return len(plan.decode) + sum(chunk for _, chunk in plan.prefill) \
        + plan.finetune_tokens + plan.backward_layers * LAYER_TOKENS


def test_invariants_over_random_pending_work():
    rng = np.random.default_rng(0)
    for _ in range(500):
        pending = _random_pending(rng, int(rng.integers(0, 300)))
        budget = int(rng.integers(0, 512))
        plan = plan_iteration(pending, budget, LATENCY, SLO, LAYER_TOKENS)
        assert plan.decode == [request for request, _ in pending.decode]  # never dropped
        limit = max(budget, len(pending.decode))
        # one unsplittable backward layer may overrun a smaller positive room
        assert _work(plan) <= limit or (plan.backward_layers == 1
                                        and _work(plan) - LAYER_TOKENS < budget)
        prefill_ids = [request for request, _, _ in pending.prefill]
        assert [request for request, _ in plan.prefill] == prefill_ids[:len(plan.prefill)]
        for (_, chunk), (_, remaining, _) in zip(plan.prefill, pending.prefill):
            assert 0 < chunk <= remaining
        if plan.finetune_tokens or plan.backward_layers:
            assert plan.predicted_seconds <= SLO + 1e-12
        assert plan.finetune_tokens <= pending.finetune_forward
        assert plan.backward_layers <= pending.finetune_backward_layers
        assert not (plan.finetune_tokens and plan.backward_layers)


def test_finetuning_fills_an_idle_iteration_up_to_the_budget():
    plan = plan_iteration(Pending([], [], finetune_forward=1000), 256, LATENCY, SLO,
                          LAYER_TOKENS)
    assert plan.finetune_tokens == 256
    assert plan.predicted_seconds == pytest.approx(LATENCY.predict(256, 256))
    backward = plan_iteration(Pending([], [], finetune_backward_layers=32), 256, LATENCY, SLO,
                              LAYER_TOKENS)
    assert backward.backward_layers == 4  # 4 * 64 token-equivalents fill the budget


def test_finetuning_shrinks_as_load_grows():
    shares = []
    for decodes in (0, 20, 60, 120, 200, 260):
        pending = Pending([(f"r{i}", 1500) for i in range(decodes)], [],
                          finetune_forward=4096, finetune_context=0)
        shares.append(plan_iteration(pending, 256, LATENCY, SLO, LAYER_TOKENS).finetune_tokens)
    assert shares == sorted(shares, reverse=True)
    assert shares[0] > 0 and shares[-1] == 0


def test_no_finetuning_when_inference_alone_misses_the_slo():
    slow = LatencyModel(base=0.05, per_token=1e-4, per_context=0.0)
    plan = plan_iteration(Pending([("a", 10)], [], finetune_forward=100), 256, slow, SLO,
                          LAYER_TOKENS)
    assert plan.decode == ["a"] and plan.finetune_tokens == 0
    assert plan.predicted_seconds > SLO


def test_decodes_past_the_budget_still_run_and_nothing_else_does():
    pending = Pending([(f"r{i}", 10) for i in range(300)], [("p", 50, 0)], finetune_forward=10)
    plan = plan_iteration(pending, 256, LATENCY, 10.0, LAYER_TOKENS)
    assert len(plan.decode) == 300 and plan.prefill == [] and plan.finetune_tokens == 0


def test_prefill_is_chunked_first_come_first_served():
    pending = Pending([("d", 100)], [("p1", 200, 0), ("p2", 300, 40), ("p3", 5, 0)])
    plan = plan_iteration(pending, 256, LATENCY, SLO, LAYER_TOKENS)
    assert plan.prefill == [("p1", 200), ("p2", 55)]
    # context: decode 100 + p1 (0 cached + 200) + p2 (40 cached + 55)
    assert plan.predicted_seconds == pytest.approx(LATENCY.predict(256, 100 + 200 + 95))


def test_empty_iteration_predicts_zero_seconds():
    plan = plan_iteration(Pending([], []), 256, LATENCY, SLO, LAYER_TOKENS)
    assert plan == IterationPlan([], [], 0, 0, 0.0)


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, 512, 200)
    context = rng.integers(0, 200_000, 200)
    truth = LatencyModel(0.011, 5e-5, 3e-8)
    samples = [(int(t), int(c), truth.predict(t, c)) for t, c in zip(tokens, context)]
    fitted = LatencyModel.fit(samples)
    assert fitted.base == pytest.approx(truth.base, rel=1e-6)
    assert fitted.per_token == pytest.approx(truth.per_token, rel=1e-6)
    assert fitted.per_context == pytest.approx(truth.per_context, rel=1e-6)


def test_fit_keeps_coefficients_non_negative():
    # seconds fall with context: an unconstrained fit would give a negative per_context
    samples = [(t, c, 0.01 + 1e-4 * t - 1e-7 * c) for t in (10, 100, 300) for c in (0, 10_000)]
    fitted = LatencyModel.fit(samples)
    assert min(fitted.base, fitted.per_token, fitted.per_context) >= 0
    assert fitted.per_context == 0.0
    with pytest.raises(ValueError):
        LatencyModel.fit([])


def test_a_backward_layer_larger_than_the_room_still_runs_beside_decodes():
    """Decodes leave 14 tokens of a 64 budget, less than one layer (64): one layer still runs
    while the SLO holds, so finetuning does not stall until the requests finish."""
    pending = Pending(decode=[(f"d{i}", 100) for i in range(50)], prefill=[],
                      finetune_backward_layers=4)
    plan = plan_iteration(pending, 64, LATENCY, SLO, LAYER_TOKENS)
    assert plan.backward_layers == 1 and plan.predicted_seconds <= SLO
    full = Pending(decode=[(f"d{i}", 100) for i in range(64)], prefill=[],
                   finetune_backward_layers=4)
    assert plan_iteration(full, 64, LATENCY, SLO, LAYER_TOKENS).backward_layers == 0
