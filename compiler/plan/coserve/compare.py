"""Co-serving against its two alternatives on N GPUs (N / tp replicas), on one trace:

- `coserve`: every replica serves inference and finetunes in the same iterations (FlexLLM).
- `separate`: k replicas serve inference only, the other N/tp - k finetune only. k is the
  smallest in 1..R-1 whose inference-only SLO attainment reaches `SEPARATE_TARGET` (0.9, the
  attainment FlexLLM reports matching), else R - 1; with one replica, k = 1 and no finetuning.
  `compare(..., split=f)` instead fixes k = round(f * R) (FlexLLM's baseline used fixed
  splits such as 75% vLLM / 25% LlamaFactory). A dedicated finetuning replica runs whole
  sequences back to back (forward, then backward over all layers) at its roofline speed, with
  no token budget.
- `temporal`: every replica alternates inference-only and finetuning-only iterations.

Requests go to replicas round-robin in arrival order.
"""

from __future__ import annotations

from .simulate import Outcome, Setup, run_replica
from .traces import Request

STRATEGIES = ("coserve", "separate", "temporal")
SEPARATE_TARGET = 0.9


def run_group(setup: Setup, requests: list[Request], replicas: int, mode: str,
              duration: float) -> Outcome:
    """Simulate `replicas` identical replicas sharing the trace round-robin."""
    total = Outcome()
    for index in range(replicas):
        total = total.merge(run_replica(setup, requests[index::replicas], mode, duration))
    return total


def dedicated_finetune_tokens_per_s(setup: Setup) -> float:
    """Sequence tokens/s of one replica that only finetunes (see the module doc)."""
    tokens = setup.finetune.sequence_tokens
    forward = setup.replica.seconds(tokens, tokens)
    backward = setup.replica.seconds(setup.replica.model.layers * setup.layer_tokens, 0)
    return tokens / (forward + backward)


def _metrics(outcome: Outcome, duration: float, finetune_tokens: float, **extra) -> dict:
    attainment = outcome.attained / outcome.requests if outcome.requests else 1.0
    return {"slo_attainment": attainment,
            "inference_tokens_per_s": outcome.output_tokens / duration,
            "finetune_tokens_per_s": finetune_tokens / duration,
            "requests": outcome.requests, "finished": outcome.finished,
            "conserved": outcome.conserved, **extra}


def separate_clusters(setup: Setup, requests: list[Request], replicas: int, duration: float,
                      split: float | None = None) -> dict:
    """Metrics of the `separate` strategy: k inference replicas chosen as the module doc says
    (searched, or `split` * replicas), the rest finetuning at the dedicated rate."""
    if split is not None:
        fixed = min(max(round(split * replicas), 1), replicas)
        outcome = run_group(setup, requests, fixed, "inference", duration)
        finetune = (replicas - fixed) * dedicated_finetune_tokens_per_s(setup) * duration
        return _metrics(outcome, duration, finetune, inference_replicas=fixed,
                        finetune_replicas=replicas - fixed)
    if replicas == 1:
        outcome = run_group(setup, requests, 1, "inference", duration)
        return _metrics(outcome, duration, 0.0, inference_replicas=1, finetune_replicas=0)
    tried: dict[int, Outcome] = {}

    def attainment(k: int) -> float:
        if k not in tried:
            tried[k] = run_group(setup, requests, k, "inference", duration)
        outcome = tried[k]
        return outcome.attained / outcome.requests if outcome.requests else 1.0

    low, high = 1, replicas - 1  # binary search: attainment grows with k
    while low < high:
        middle = (low + high) // 2
        if attainment(middle) >= SEPARATE_TARGET:
            high = middle
        else:
            low = middle + 1
    attainment(low)
    finetune = (replicas - low) * dedicated_finetune_tokens_per_s(setup) * duration
    return _metrics(tried[low], duration, finetune, inference_replicas=low,
                    finetune_replicas=replicas - low)


def compare(setup: Setup, requests: list[Request], gpus: int, duration: float,
            split: float | None = None) -> dict:
    """Metrics of the three strategies (keys of `STRATEGIES`) over requests arriving within
    `duration`; requires gpus to be a multiple of the replica's tp. `split`: the inference
    share of a fixed separate split, None for the smallest k meeting `SEPARATE_TARGET`."""
    replicas = gpus // setup.replica.tp
    window = [r for r in requests if r.arrival < duration]
    report = {}
    for mode in ("coserve", "temporal"):
        outcome = run_group(setup, window, replicas, mode, duration)
        report[mode] = _metrics(outcome, duration, outcome.finetune_tokens)
    report["separate"] = separate_clusters(setup, window, replicas, duration, split)
    return {name: report[name] for name in STRATEGIES}
