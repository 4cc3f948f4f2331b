"""One `mlc serve` run end to end: build the model, read the trace and finetuning data, profile
iteration latency for the scheduler, co-serve, and return the three report documents."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from .engine import ServingEngine
from .finetune import FinetuneJob
from .loop import scheduler_planner, serve_trace
from .model import LlamaModel
from .profile import backward_layer_seconds, profile_latency
from .report import finetune_doc, latencies_doc, summary_doc
from .trace import load_finetune_data, load_requests
from .weights import load_weights


@dataclass(frozen=True)
class ServeSettings:
    """Resolved options of a serving run (slo_tpot in seconds)."""

    model: str
    budget: int
    slo_tpot: float
    lora_rank: int
    lr: float = 1e-3
    accumulation: int = 1
    epochs: int = 1
    steps: int | None = None
    max_seconds: float | None = None
    seed: int = 0
    weights: Path | None = None


def fit_latency(model: LlamaModel, budget: int, sequence_tokens: int):
    """(LatencyModel fitted to profiled iterations up to `budget` tokens, token-equivalent cost
    of one finetuning backward layer for a `sequence_tokens` sequence).

    Ensures: the layer cost is at most `budget`, since a layer is the smallest unit of backward
    and must fit an iteration that holds nothing else."""
    from mlc.compiler.plan.coserve.scheduler import LatencyModel

    counts = sorted({1, max(1, budget // 4), max(1, budget // 2), budget})
    latency = LatencyModel.fit(profile_latency(model, counts, contexts=(0, 128, 512)))
    per_token = max(latency.per_token, 1e-9)
    layer_tokens = backward_layer_seconds(model, sequence_tokens) / per_token
    return latency, min(layer_tokens, float(budget))


def run_session(settings: ServeSettings, requests_file: Path, finetune_file: Path | None,
                on_iteration=None) -> dict[str, dict]:
    """Co-serve the trace (and finetune on the data, if given) under the hybrid token
    scheduler; returns {"latencies": ..., "finetune": ..., "report": ...}.

    Requires: `settings.model` is a config small enough for this CPU. Ensures: MlcError (with
    file and line) for malformed inputs, before any serving starts."""
    model = LlamaModel.from_config(settings.model, seed=settings.seed,
                                   lora_rank=settings.lora_rank,
                                   lora_alpha=2.0 * settings.lora_rank)
    if settings.weights is not None:
        load_weights(model, settings.weights)
    vocab = model.config.vocab
    requests = load_requests(requests_file, vocab)
    sequences = load_finetune_data(finetune_file, vocab) if finetune_file else []
    mean_length = int(statistics.fmean(len(s) for s in sequences)) if sequences else 64
    latency, backward_tokens = fit_latency(model, settings.budget, min(mean_length, 512))
    job = (FinetuneJob(model, sequences, settings.lr, settings.accumulation, settings.epochs)
           if sequences else None)
    engine = ServingEngine(model, job)
    planner = scheduler_planner(settings.budget, latency, settings.slo_tpot, backward_tokens)
    outcome = serve_trace(engine, requests, planner, settings.steps, settings.max_seconds,
                          on_iteration)
    report = {"model": settings.model, "budget": settings.budget,
              "lora_rank": settings.lora_rank, **summary_doc(engine, outcome, settings.slo_tpot),
              "latency_model": {"base": latency.base, "per_token": latency.per_token,
                                "per_context": latency.per_context},
              "backward_layer_tokens": backward_tokens}
    return {"latencies": latencies_doc(engine, outcome), "finetune": finetune_doc(engine, outcome),
            "report": report}
