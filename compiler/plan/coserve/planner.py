"""`mlc plan coserve`: size a co-serving deployment (tensor parallelism, memory split, token
budget, finetuning limits) and simulate it against separate clusters and temporal sharing.

Token budget rule: the largest budget (at most `MAX_BUDGET`, at least `MIN_BUDGET`) whose
predicted iteration latency at the expected context stays within the TPOT SLO. The expected
context is Little's law at the SLO pace: a replica receiving lambda requests/s with mean output
O decodes about lambda * O * SLO requests at once, each attending prompt + O/2 tokens on average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlc.compiler.errors import MlcError

from ..models import load_model_config
from .compare import compare
from .latency import FinetuneShape, Replica, gpu_type
from .scheduler import Pending, plan_iteration
from .simulate import Setup
from .traces import OUTPUT_CLIP, PROMPT_CLIP, Request

MAX_BUDGET, MIN_BUDGET = 512, 16
TP_CHOICES = (1, 2, 4, 8)
MAX_REPLICA_SECONDS = 20_000  # simulated seconds x replicas: ~10 ms of CPU per replica-second


@dataclass(frozen=True)
class Workload:
    """What the planner knows of the inference load: rate, mean and longest request."""

    rate: float
    prompt_mean: float
    output_mean: float
    max_sequence: int

    @classmethod
    def of(cls, requests: list[Request], duration: float) -> Workload:
        prompt = np.array([r.prompt_tokens for r in requests], dtype=float)
        output = np.array([r.max_new_tokens for r in requests], dtype=float)
        longest = int(max(prompt + output)) if requests else PROMPT_CLIP[1] + OUTPUT_CLIP[1]
        return cls(len(requests) / duration, float(prompt.mean()) if requests else 1.0,
                   float(output.mean()) if requests else 1.0, longest)


def choose_replica(model_name: str, gpu_name: str, gpus: int, tp: int | None,
                   finetune: FinetuneShape, max_sequence: int) -> tuple[Replica, dict]:
    """The given tp, else the smallest whose weights take at most half of each GPU's usable
    memory (leaving the KV cache at least as much), else the smallest that fits at all;
    MlcError when none fits (it says by how much)."""
    if gpus < 1:
        raise MlcError(f"--gpus must be >= 1, got {gpus}")
    if tp is not None and (tp < 1 or gpus % tp):
        raise MlcError(f"--gpus {gpus} is not a multiple of --tp {tp}")
    model, gpu = load_model_config(model_name), gpu_type(gpu_name)
    if tp is not None and model.heads % tp:
        raise MlcError(f"--tp {tp} does not split the {model.heads} attention heads of "
                       f"{model.name}; choose a tp that divides {model.heads}")
    choices = [tp] if tp else [t for t in TP_CHOICES if t <= gpus and gpus % t == 0
                               and model.heads % t == 0]
    fitting, error = [], None
    for degree in choices:
        replica = Replica(model, gpu, degree)
        try:
            fitting.append((replica, replica.memory(finetune, max_sequence).as_dict()))
        except MlcError as err:
            error = err
    if not fitting:
        raise error
    usable = gpu.memory_bytes * replica.eff.memory_utilization
    roomy = [pair for pair in fitting if pair[1]["weights"] <= usable / 2]
    return (roomy or fitting)[0]


def _finetune_limits(setup: Setup) -> tuple[int, int]:
    """Forward tokens and backward layers one otherwise idle iteration may run."""
    forward = plan_iteration(Pending([], [], finetune_forward=setup.budget), setup.budget,
                             setup.latency, setup.slo_tpot, setup.layer_tokens)
    backward = plan_iteration(Pending([], [], finetune_backward_layers=setup.replica.model.layers),
                              setup.budget, setup.latency, setup.slo_tpot, setup.layer_tokens)
    return forward.finetune_tokens, backward.backward_layers


def build_setup(replica: Replica, memory: dict, workload: Workload, gpus: int, slo_tpot: float,
                finetune: FinetuneShape) -> tuple[Setup, list[str]]:
    """The fitted latency model and token budget (module doc); MlcError if the SLO is below the
    TPOT of one request decoding alone."""
    alone = replica.seconds(1, workload.prompt_mean + workload.output_mean)
    if slo_tpot < alone:
        raise MlcError(f"--slo-tpot {slo_tpot * 1e3:g}ms cannot be met: the minimum achievable "
                       f"TPOT of {replica.model.name} on {replica.tp} x {replica.gpu.name} is "
                       f"{alone * 1e3:.1f} ms (one request decoding alone)")
    replicas = gpus // replica.tp
    concurrent = workload.rate / replicas * workload.output_mean * slo_tpot
    expected = min(concurrent * (workload.prompt_mean + workload.output_mean / 2),
                   memory["kv_tokens"])
    fit_context = min(max(4 * expected, 16_384), memory["kv_tokens"])
    latency = replica.latency_model(MAX_BUDGET, int(fit_context))
    room = (slo_tpot - latency.predict(0, expected)) / (latency.per_token + latency.per_context)
    budget = int(np.clip(np.floor(room), MIN_BUDGET, MAX_BUDGET))
    notes = []
    if budget < concurrent + 1:
        notes.append(f"expected load (~{concurrent:.0f} decoding requests per replica) leaves "
                     f"no room for finetuning within the SLO at budget {budget}")
    return Setup(replica, latency, budget, slo_tpot, memory["kv_tokens"], finetune), notes


def plan_coserve(model_name: str, gpu_name: str, gpus: int, slo_tpot: float,
                 requests: list[Request], duration: float, lora_rank: int = 16,
                 tp: int | None = None, trace_name: str = "poisson") -> tuple[dict, dict]:
    """plan.json and report.json documents for the CLI (see cli/plan_cmd.py)."""
    if lora_rank < 1:
        raise MlcError(f"--lora-rank must be >= 1, got {lora_rank}")
    if duration <= 0:
        raise MlcError(f"--duration must be > 0, got {duration}")
    finetune = FinetuneShape(lora_rank=lora_rank)
    window = [r for r in requests if r.arrival < duration]
    workload = Workload.of(window, duration)
    replica, memory = choose_replica(model_name, gpu_name, gpus, tp, finetune,
                                     workload.max_sequence)
    if gpus // replica.tp * duration > MAX_REPLICA_SECONDS:
        raise MlcError(f"simulating {gpus // replica.tp} replicas for {duration:g} s would take "
                       f"too long (the limit is {MAX_REPLICA_SECONDS:,} replica-seconds, about "
                       "3 minutes); shorten --duration or use fewer --gpus")
    setup, notes = build_setup(replica, memory, workload, gpus, slo_tpot, finetune)
    forward, backward = _finetune_limits(setup)
    plan = {"model": replica.model.name, "gpu": replica.gpu.name, "gpus": gpus,
            "tp": replica.tp, "replicas": gpus // replica.tp, "token_budget": setup.budget,
            "slo_tpot_ms": slo_tpot * 1e3, "ttft_slo_ms": setup.ttft_slo * 1e3,
            "lora_rank": lora_rank,
            "finetune": {"sequence_tokens": finetune.sequence_tokens,
                         "max_tokens_per_iteration": forward,
                         "backward_layers_per_iteration": backward,
                         "backward_layer_tokens": round(setup.layer_tokens, 2)},
            "memory_bytes_per_gpu": memory,
            "latency_model": {"base_s": setup.latency.base,
                              "per_token_s": setup.latency.per_token,
                              "per_context_s": setup.latency.per_context},
            "notes": notes}
    results = compare(setup, window, gpus, duration)
    coserve = results["coserve"]["finetune_tokens_per_s"]
    ratios = {f"finetune_vs_{name}": (coserve / results[name]["finetune_tokens_per_s"]
                                      if results[name]["finetune_tokens_per_s"] else None)
              for name in ("separate", "temporal")}
    report = {**results, "trace": trace_name, "duration_s": duration,
              "rate": workload.rate, "requests": len(window), "ratios": ratios}
    return plan, report
