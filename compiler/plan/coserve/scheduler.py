"""FlexLLM's hybrid token scheduler: one serving iteration's token budget goes to inference
first (a decode token per running request, then prefill chunks in arrival order) and the rest
to LoRA finetuning, only as far as the predicted iteration latency stays within the TPOT SLO.

"Context" throughout is the number of KV-cache entries the iteration reads: the sum, over the
sequences in the batch, of the KV length each one attends (its cached tokens plus the tokens it
adds this iteration). Attention reads each sequence's KV once per iteration, so the iteration's
memory traffic grows with this sum, and the latency model is linear in it.

    >>> latency = LatencyModel(base=0.010, per_token=1e-4, per_context=1e-7)
    >>> plan = plan_iteration(Pending(decode=[("a", 100)], prefill=[], finetune_forward=1024),
    ...                       budget=256, latency=latency, slo_tpot=0.045,
    ...                       backward_layer_tokens=64.0)
    >>> plan.decode, plan.finetune_tokens
    (['a'], 255)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyModel:
    """Iteration seconds = base + per_token * tokens + per_context * context (see module doc)."""

    base: float
    per_token: float
    per_context: float

    def predict(self, tokens: float, context: float) -> float:
        """Predicted seconds of an iteration running `tokens` tokens that read `context` KV."""
        return self.base + self.per_token * tokens + self.per_context * context

    @classmethod
    def fit(cls, samples: list[tuple[int, int, float]]) -> LatencyModel:
        """Least squares over `(tokens, context, seconds)` samples with every coefficient >= 0.

        Requires at least one sample. Ensures the non-negative coefficients with the smallest
        squared error: the three-variable problem is solved exactly by trying every subset of
        free coefficients (the others held at zero) and keeping the best feasible one.
        """
        if not samples:
            raise ValueError("LatencyModel.fit needs at least one (tokens, context, s) sample")
        data = np.asarray(samples, dtype=float)
        design = np.column_stack([np.ones(len(data)), data[:, 0], data[:, 1]])
        seconds = data[:, 2]
        best, best_error = np.zeros(3), float(np.sum(seconds**2))
        for size in (1, 2, 3):
            for columns in itertools.combinations(range(3), size):
                solution, *_ = np.linalg.lstsq(design[:, columns], seconds, rcond=None)
                if np.any(solution < 0):
                    continue
                coefficients = np.zeros(3)
                coefficients[list(columns)] = solution
                error = float(np.sum((design @ coefficients - seconds) ** 2))
                if error < best_error - 1e-30:
                    best, best_error = coefficients, error
        return cls(float(best[0]), float(best[1]), float(best[2]))


@dataclass
class Pending:
    """Work waiting for the next iteration.

    `decode`: (request id, context length) of running requests that need one token.
    `prefill`: (request id, remaining prompt tokens, tokens already cached), FCFS order.
    The finetuning sequence is either in its forward pass (`finetune_forward` tokens left,
    `finetune_context` already in its KV cache) or, once that is 0, in its backward pass
    (`finetune_backward_layers` layers left, last layer first).
    """

    decode: list[tuple[str, int]]
    prefill: list[tuple[str, int, int]]
    finetune_forward: int = 0
    finetune_context: int = 0
    finetune_backward_layers: int = 0


@dataclass
class IterationPlan:
    """What one iteration runs and its predicted latency (0 for an empty iteration)."""

    decode: list[str]
    prefill: list[tuple[str, int]]
    finetune_tokens: int
    backward_layers: int
    predicted_seconds: float


def plan_iteration(pending: Pending, budget: int, latency: LatencyModel, slo_tpot: float,
                   backward_layer_tokens: float) -> IterationPlan:
    """Fill one iteration: decodes, then FCFS prefill chunks, then finetuning.

    Requires budget >= 0, slo_tpot > 0, backward_layer_tokens > 0.
    Ensures: every pending decode is in the plan (even past the budget: a running request is
    never starved); decode + prefill + finetune tokens + backward_layers * backward_layer_tokens
    <= max(budget, decodes), except that one backward layer may overrun a smaller positive room
    (see `_backward_layers`); finetuning is added only while the predicted latency stays
    <= slo_tpot, so none is added when inference alone already misses the SLO; forward tokens
    run only while the sequence is in its forward pass, backward layers only after it.
    A backward layer counts as `backward_layer_tokens` tokens and adds no context: its reads of
    the sequence's KV are folded into those token-equivalents.
    """
    decode = [request for request, _ in pending.decode]
    tokens = len(decode)
    context = sum(length for _, length in pending.decode)
    prefill: list[tuple[str, int]] = []
    for request, remaining, cached in pending.prefill:
        chunk = min(remaining, budget - tokens)
        if chunk <= 0:
            break
        prefill.append((request, chunk))
        tokens += chunk
        context += cached + chunk
    room = budget - tokens
    forward = backward = 0
    if pending.finetune_forward > 0:
        forward = _forward_tokens(pending, room, latency, slo_tpot, tokens, context)
        if forward:
            tokens += forward
            context += pending.finetune_context + forward
    elif pending.finetune_backward_layers > 0:
        backward = _backward_layers(pending, room, latency, slo_tpot, tokens, context,
                                    backward_layer_tokens)
    work = tokens + backward * backward_layer_tokens
    seconds = latency.predict(work, context) if work > 0 else 0.0
    return IterationPlan(decode, prefill, forward, backward, seconds)


def _forward_tokens(pending: Pending, room: int, latency: LatencyModel, slo_tpot: float,
                    tokens: int, context: int) -> int:
    """Largest forward chunk within the room and the SLO (the chunk also reads its own KV)."""
    cap = min(pending.finetune_forward, room)
    if cap <= 0:
        return 0
    slack = slo_tpot - latency.predict(tokens, context + pending.finetune_context)
    marginal = latency.per_token + latency.per_context
    if marginal * cap <= slack:
        chunk = cap
    else:  # here marginal > 0 unless slack < 0, when nothing fits
        chunk = math.floor(slack / marginal) if marginal > 0 else 0
    while chunk > 0 and latency.predict(tokens + chunk,
                                        context + pending.finetune_context + chunk) > slo_tpot:
        chunk -= 1  # floating-point guard: the closed form can overshoot by one token
    return max(chunk, 0)


def _backward_layers(pending: Pending, room: int, latency: LatencyModel, slo_tpot: float,
                     tokens: int, context: int, layer_tokens: float) -> int:
    """Most backward layers whose token-equivalents fit the room and keep the SLO. A layer
    cannot be split, so one layer may overrun a positive room that is smaller than it (the SLO
    check still holds): otherwise a sequence whose layer costs more than the room left beside
    running decodes would stall until the requests are gone."""
    if room <= 0:
        return 0
    cap = min(pending.finetune_backward_layers, max(1, math.floor(room / layer_tokens)))
    slack = slo_tpot - latency.predict(tokens, context)
    per_layer = latency.per_token * layer_tokens
    if per_layer * cap <= slack:
        layers = cap
    else:
        layers = math.floor(slack / per_layer) if per_layer > 0 else 0
    while layers > 0 and latency.predict(tokens + layers * layer_tokens, context) > slo_tpot:
        layers -= 1
    return max(layers, 0)
