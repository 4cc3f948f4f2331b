"""The three documents `mlc serve` writes: per-request latencies, the finetuning loss curve, and a
summary (TPOT percentiles, SLO attainment, inference and finetuning throughput)."""

from __future__ import annotations

import statistics

from .engine import ServingEngine
from .loop import LoopResult


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latencies_doc(engine: ServingEngine, outcome: LoopResult | None = None) -> dict:
    """{"requests": [{id, prompt_tokens, output_tokens, ttft, tpot, e2e}] in seconds for the
    finished requests, "unfinished": ids still waiting, running, or not yet arrived when the
    run stopped}."""
    not_admitted = outcome.not_admitted if outcome is not None else []
    return {"requests": [state.latencies() for state in engine.finished.values()],
            "unfinished": sorted([*engine.active, *not_admitted])}


def finetune_doc(engine: ServingEngine, outcome: LoopResult) -> dict:
    """Loss per optimizer step and per sequence, and forward tokens per wall second."""
    job = engine.finetune
    if job is None:
        return {"steps": [], "sequence_losses": [], "forward_tokens": 0,
                "finetune_tokens_per_second": 0.0}
    return {"steps": job.steps, "sequence_losses": job.sequence_losses,
            "forward_tokens": job.forward_tokens,
            "backward_layers": outcome.totals()["backward_layers"],
            "finetune_tokens_per_second": job.forward_tokens / max(outcome.seconds, 1e-9)}


def summary_doc(engine: ServingEngine, outcome: LoopResult, slo_tpot: float) -> dict:
    """Requests served, TPOT mean/p50/p99 (ms), fraction of finished requests within the TPOT
    SLO, inference and finetuning tokens per second, and the first and last finetuning loss."""
    finished = [state.latencies() for state in engine.finished.values()]
    tpots = [entry["tpot"] * 1e3 for entry in finished if entry["output_tokens"] > 1]
    totals, seconds = outcome.totals(), max(outcome.seconds, 1e-9)
    losses = [step["loss"] for step in engine.finetune.steps] if engine.finetune else []
    return {"requests": len(finished) + len(engine.active) + len(outcome.not_admitted),
           "finished": len(finished),
           "seconds": outcome.seconds, "stopped_by": outcome.stopped_by, **totals,
           "tpot_mean_ms": statistics.fmean(tpots) if tpots else None,
           "tpot_p50_ms": percentile(tpots, 50) if tpots else None,
           "tpot_p99_ms": percentile(tpots, 99) if tpots else None,
           "ttft_mean_ms": (statistics.fmean(e["ttft"] for e in finished) * 1e3
                            if finished else None),
           "slo_tpot_ms": slo_tpot * 1e3,
           "slo_attainment": (sum(e["tpot"] <= slo_tpot for e in finished) / len(finished)
                              if finished else None),
           "inference_tokens_per_second":
               (totals["decode_tokens"] + totals["prefill_tokens"]) / seconds,
           "output_tokens_per_second": totals["output_tokens"] / seconds,
           "finetune_tokens_per_second": totals["finetune_tokens"] / seconds,
           "loss_first": losses[0] if losses else None,
           "loss_last": losses[-1] if losses else None}
