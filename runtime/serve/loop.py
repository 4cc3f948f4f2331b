"""The co-serving loop: admit trace requests as their arrival time passes, ask a planner for each
iteration, execute it on the engine, and summarise latencies and throughput.

The planner is the policy: `planner(engine) -> plan` (an IterationPlan). `scheduler_planner`
builds one from FlexLLM's hybrid token scheduler in `mlc.compiler.plan.coserve.scheduler`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mlc.compiler.errors import MlcError

from .engine import Request, ServingEngine, StepResult


@dataclass
class LoopResult:
    """Everything the run did, for the reports: per-iteration results, wall seconds, and the
    ids of requests the run stopped before they arrived (`not_admitted`), which the reports
    count as unfinished rather than drop."""

    iterations: list[StepResult] = field(default_factory=list)
    started_at: float = 0.0
    seconds: float = 0.0
    stopped_by: str = "done"
    not_admitted: list[str] = field(default_factory=list)

    def totals(self) -> dict:
        its = self.iterations
        return {"iterations": len(its),
                "decode_tokens": sum(r.decode_tokens for r in its),
                "prefill_tokens": sum(r.prefill_tokens for r in its),
                "output_tokens": sum(len(r.tokens) for r in its),
                "finetune_tokens": sum(r.finetune_tokens for r in its),
                "backward_layers": sum(r.backward_layers for r in its)}


def scheduler_planner(budget: int, latency, slo_tpot: float, backward_layer_tokens: float):
    """planner(engine) that fills `budget` tokens per iteration with FlexLLM's hybrid token
    scheduler: inference first, finetuning in what the latency SLO leaves."""
    from mlc.compiler.plan.coserve.scheduler import Pending, plan_iteration

    def planner(engine: ServingEngine):
        job = engine.finetune
        pending = Pending(decode=engine.decode_ready(), prefill=engine.prefill_waiting(),
                          finetune_forward=job.remaining_forward if job else 0,
                          finetune_context=job.context if job else 0,
                          finetune_backward_layers=job.backward_left if job else 0)
        return plan_iteration(pending, budget, latency, slo_tpot, backward_layer_tokens)

    return planner


def serve_trace(engine: ServingEngine, requests: list[Request], planner,
                max_steps: int | None = None, max_seconds: float | None = None,
                on_iteration=None) -> LoopResult:
    """Serve `requests` (arrival = seconds after the start) while the engine's finetuning job
    uses the rest of each iteration; stops when all requests finished and the job is done, or
    at `max_steps` iterations / `max_seconds`.

    Ensures: on_iteration(result, engine, loop_result) after every iteration; MlcError if the
    planner returns an iteration that does nothing while work is pending."""
    queue = sorted(requests, key=lambda r: r.arrival)
    start = engine.clock()
    outcome = LoopResult(started_at=start)
    while True:
        elapsed = engine.clock() - start
        while queue and queue[0].arrival <= elapsed:
            request = queue.pop(0)
            engine.add_request(request, arrived_at=start + request.arrival)
        if engine.idle and not queue:
            break
        if max_steps is not None and len(outcome.iterations) >= max_steps:
            outcome.stopped_by = "steps"
            break
        if max_seconds is not None and elapsed >= max_seconds:
            outcome.stopped_by = "seconds"
            break
        if engine.idle:  # nothing to run until the next arrival
            time.sleep(max(0.0, min(queue[0].arrival - elapsed, 0.05)))
            continue
        result = engine.step(planner(engine))
        if not (result.inference_tokens or result.finetune_tokens or result.backward_layers):
            raise MlcError("the scheduler planned an empty iteration while work is pending: "
                           "the TPOT SLO leaves no room at this budget on this machine; raise "
                           "--slo-tpot or lower --budget")
        outcome.iterations.append(result)
        if on_iteration is not None:
            on_iteration(result, engine, outcome)
    outcome.seconds = engine.clock() - start
    outcome.not_admitted = [request.id for request in queue]
    return outcome
