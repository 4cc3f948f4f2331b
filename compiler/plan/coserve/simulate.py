"""Discrete-event simulation of one replica serving a request trace, one event per iteration:
requests arrive, are admitted while their KV reservation fits, prefill in chunks, decode a
token per iteration; a LoRA finetuning job runs sequence after sequence (forward chunks, then
backward layers, last layer first). Plans come from `plan_iteration` with the fitted latency
model; each iteration then takes its roofline time (`Replica.seconds`).

Modes: `coserve` (FlexLLM: finetuning fills each iteration within the SLO), `inference`
(inference only), and `temporal` (inference-only and finetuning-only iterations alternate:
after every `TEMPORAL_PERIOD` inference iterations, as many full-budget finetuning iterations as
keep those iterations' mean time within the SLO, and finetuning whenever the replica is idle).

Metrics: a request attains the SLO when it finishes, its time to first token is within
`ttft_slo` and its mean TPOT, (finish - first token) / (output tokens - 1), is within the TPOT
SLO (FlexLLM's artifact counts both). Arrivals stop at `duration`; throughputs count the
iterations that end by then; the replica then drains its requests without finetuning for up to
`duration + DRAIN_SECONDS` more, and requests still unfinished count as misses.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .latency import FinetuneShape, Replica
from .scheduler import LatencyModel, Pending, plan_iteration
from .traces import Request

MODES = ("coserve", "inference", "temporal")
TEMPORAL_PERIOD = 64  # iterations, as in FlexLLM's temporal-sharing baseline
MAX_RUNNING = 256  # requests per batch in FlexLLM's evaluation
DRAIN_SECONDS = 30.0


@dataclass(frozen=True)
class Setup:
    """Everything one replica's simulation needs; `kv_tokens` is the replica's KV capacity."""

    replica: Replica
    latency: LatencyModel
    budget: int
    slo_tpot: float
    kv_tokens: int
    finetune: FinetuneShape = field(default_factory=FinetuneShape)
    ttft_slo: float = 5.0

    @property
    def layer_tokens(self) -> float:
        return self.replica.backward_layer_tokens(self.finetune)


@dataclass
class Outcome:
    """Counts over one or more replicas; tokens are those produced within the window."""

    requests: int = 0
    finished: int = 0
    attained: int = 0
    output_tokens: float = 0.0
    finetune_tokens: float = 0.0
    conserved: bool = True  # every finished request produced exactly its output tokens

    def merge(self, other: Outcome) -> Outcome:
        return Outcome(self.requests + other.requests, self.finished + other.finished,
                       self.attained + other.attained, self.output_tokens + other.output_tokens,
                       self.finetune_tokens + other.finetune_tokens,
                       self.conserved and other.conserved)


class _Finetune:
    """The finetuning job's state machine; credits sequence tokens in proportion to work, so a
    sequence whose forward and backward both finished credits exactly its length."""

    def __init__(self, setup: Setup):
        self.tokens = setup.finetune.sequence_tokens
        self.layers = setup.replica.model.layers
        work = self.tokens + self.layers * setup.layer_tokens
        self.forward_credit = self.tokens / work
        self.backward_credit = setup.layer_tokens * self.tokens / work
        self.forward_left, self.context, self.backward_left = self.tokens, 0, 0

    def pending(self, decode, prefill) -> Pending:
        return Pending(decode, prefill, self.forward_left, self.context, self.backward_left)

    def advance(self, forward: int, backward: int) -> float:
        self.forward_left -= forward
        self.context += forward
        if forward and not self.forward_left:
            self.backward_left = self.layers
        self.backward_left -= backward
        if backward and not self.backward_left:  # step done: next sequence
            self.forward_left, self.context = self.tokens, 0
        return forward * self.forward_credit + backward * self.backward_credit


def run_replica(setup: Setup, requests: list[Request], mode: str, duration: float) -> Outcome:
    """Simulate one replica over `requests` (sorted by arrival); see the module doc."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} not in {MODES}")
    ids = [r.id for r in requests]
    prompt = [r.prompt_tokens for r in requests]
    out = [r.max_new_tokens for r in requests]
    done = [0] * len(requests)
    first = [math.nan] * len(requests)
    finish = [math.nan] * len(requests)
    finetune = None if mode == "inference" else _Finetune(setup)
    kv_free = setup.kv_tokens - (0 if finetune is None else setup.finetune.sequence_tokens)
    waiting: deque[int] = deque()
    prefilling: list[list[int]] = []  # [request, prompt tokens left, tokens cached]
    running: list[int] = []
    arrived, now, outcome = 0, 0.0, Outcome(requests=len(requests))
    cycle_iterations, cycle_seconds, allowance = 0, 0.0, 0
    full_finetune_seconds = setup.latency.predict(setup.budget, setup.budget)
    layer_tokens = setup.layer_tokens
    while now < 2 * duration + DRAIN_SECONDS:
        while arrived < len(requests) and requests[arrived].arrival <= now:
            waiting.append(arrived)
            arrived += 1
        while waiting and len(running) + len(prefilling) < MAX_RUNNING \
                and prompt[waiting[0]] + out[waiting[0]] <= kv_free:
            j = waiting.popleft()
            kv_free -= prompt[j] + out[j]
            prefilling.append([j, prompt[j], 0])
        busy = bool(running or prefilling)
        may_finetune = finetune is not None and now < duration
        finetune_only = may_finetune and mode == "temporal" and (not busy or allowance > 0)
        if not busy and not may_finetune:
            if arrived == len(requests):
                break
            now = max(now, requests[arrived].arrival)
            continue
        if finetune_only:
            pending, slo = finetune.pending([], []), math.inf
            allowance = max(allowance - 1, 0) if busy else allowance
        else:
            decode = [(ids[j], prompt[j] + done[j]) for j in running]
            prefill = [(ids[j], left, cached) for j, left, cached in prefilling]
            pending, slo = Pending(decode, prefill), setup.slo_tpot
            if may_finetune and mode == "coserve":
                pending = finetune.pending(decode, prefill)
        plan = plan_iteration(pending, setup.budget, setup.latency, slo, layer_tokens)
        context = sum(length for _, length in pending.decode)
        context += sum(cached + chunk for (_, chunk), (_, _, cached)
                       in zip(plan.prefill, pending.prefill))
        if plan.finetune_tokens:
            context += pending.finetune_context + plan.finetune_tokens
        tokens = len(plan.decode) + sum(chunk for _, chunk in plan.prefill) \
            + plan.finetune_tokens + plan.backward_layers * layer_tokens
        end = now + setup.replica.seconds(tokens, context)
        generated = 0
        still_running = []
        for j in running:
            done[j] += 1
            generated += 1
            if done[j] == out[j]:
                finish[j] = end
                kv_free += prompt[j] + out[j]
            else:
                still_running.append(j)
        for entry, (_, chunk) in zip(prefilling[:len(plan.prefill)], plan.prefill):
            entry[1] -= chunk
            entry[2] += chunk
            if entry[1] == 0:  # the prompt's last chunk also yields the first token
                j = entry[0]
                done[j], first[j] = 1, end
                generated += 1
                if out[j] == 1:
                    finish[j] = end
                    kv_free += prompt[j] + out[j]
                else:
                    still_running.append(j)
        prefilling = [entry for entry in prefilling if entry[1] > 0]
        running = still_running
        credit = finetune.advance(plan.finetune_tokens, plan.backward_layers) \
            if finetune is not None else 0.0
        if end <= duration:
            outcome.output_tokens += generated
            outcome.finetune_tokens += credit
        if mode == "temporal" and not finetune_only:
            cycle_iterations, cycle_seconds = cycle_iterations + 1, cycle_seconds + end - now
            if cycle_iterations == TEMPORAL_PERIOD:
                slack = TEMPORAL_PERIOD * setup.slo_tpot - cycle_seconds
                allowance = max(int(slack // full_finetune_seconds), 0)
                cycle_iterations, cycle_seconds = 0, 0.0
        now = end
    for j in range(len(requests)):
        if math.isnan(finish[j]):
            continue
        outcome.finished += 1
        outcome.conserved &= done[j] == out[j]
        tpot = (finish[j] - first[j]) / (out[j] - 1) if out[j] > 1 else 0.0
        ttft = first[j] - requests[j].arrival
        outcome.attained += tpot <= setup.slo_tpot * (1 + 1e-9) and ttft <= setup.ttft_slo
    return outcome
