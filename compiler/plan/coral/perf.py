"""Performance model of one model replica: does it fit, and how many requests/s it sustains at
a latency SLO for a workload's mean prompt and output lengths.

Decode steps are bandwidth-bound (weights + KV cache read once per step) unless compute catches
up; prefill is compute-bound; tensor parallelism pays two ring all-reduces per layer, pipeline
parallelism one activation transfer per stage boundary. Prefill is mixed into decode steps
(chunked prefill), so each step also carries `batch / output_tokens` requests' prefill work.
With `pp` stages the batch splits into `pp` micro-batches that keep every stage busy: the time
per output token is `pp` times the slowest stage's step.

    >>> from .catalog import load_catalog
    >>> from mlc.compiler.plan.models import load_model_config
    >>> perf = estimate(load_model_config("llama-3.1-8b"), homogeneous("l4", 1, 1, 32),
    ...                 Workload(1.0, 512, 128), load_catalog())
    >>> perf.fits, perf.throughput > 0
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models import ModelConfig
from .catalog import NETWORK_BANDWIDTH, NETWORK_LATENCY, GpuType


@dataclass(frozen=True)
class Workload:
    """One model's demand: mean request shape, arrival rate and latency SLO."""

    requests_per_s: float
    prompt_tokens: int
    output_tokens: int
    tpot_slo_s: float = 0.1  # time per output token
    ttft_slo_s: float = 5.0  # time to first token
    weight: float = 1.0  # goodput weight when demand cannot all be served

    @property
    def shape_key(self) -> tuple:
        """What stage 1 depends on (everything but the rate and the weight)."""
        return (self.prompt_tokens, self.output_tokens, self.tpot_slo_s, self.ttft_slo_s)


@dataclass(frozen=True)
class Efficiency:
    """Calibratable factors that are not per GPU type (those live on `GpuType`)."""

    memory_utilization: float = 0.9  # of GPU memory for weights + KV (vLLM's default)
    activation_reserve_bytes: float = 1.0 * 2**30  # activations, CUDA graphs, fragmentation
    comm_efficiency: float = 0.7  # achieved / peak link bandwidth
    step_overhead_s: float = 0.002  # scheduling and launches per step and stage
    max_batch: int = 512  # vLLM's --max-num-seqs cap


DEFAULT_EFFICIENCY = Efficiency()


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: `tp` GPUs of one type holding `layers` consecutive layers."""

    gpu: str
    tp: int
    layers: int


@dataclass(frozen=True)
class ReplicaConfig:
    """One model replica: its pipeline stages, in order (first holds the embedding)."""

    stages: tuple[Stage, ...]

    @property
    def pp(self) -> int:
        return len(self.stages)

    @property
    def gpu_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stage in self.stages:
            counts[stage.gpu] = counts.get(stage.gpu, 0) + stage.tp
        return counts

    @property
    def n_gpus(self) -> int:
        return sum(stage.tp for stage in self.stages)

    @property
    def mixed(self) -> bool:
        return len({stage.gpu for stage in self.stages}) > 1

    @property
    def key(self) -> str:
        """Readable and unique: `l4:tp2*2[16,16]` or `a100-40gb:tp2*1[50]+l4:tp2*1[30]`."""
        groups: list[list] = []
        for stage in self.stages:
            if groups and groups[-1][0] == stage.gpu and groups[-1][1] == stage.tp:
                groups[-1][2].append(stage.layers)
            else:
                groups.append([stage.gpu, stage.tp, [stage.layers]])
        return "+".join(f"{gpu}:tp{tp}*{len(layers)}[{','.join(map(str, layers))}]"
                        for gpu, tp, layers in groups)


def homogeneous(gpu: str, tp: int, pp: int, layers: int) -> ReplicaConfig:
    """TP x PP on one GPU type, layers split as evenly as possible (earlier stages get more)."""
    base, extra = divmod(layers, pp)
    return ReplicaConfig(tuple(Stage(gpu, tp, base + (i < extra)) for i in range(pp)))


@dataclass(frozen=True)
class ReplicaPerf:
    """The estimate for one (model, replica, workload); throughput 0 when it does not fit."""

    fits: bool
    reason: str
    throughput: float = 0.0  # requests/s sustained within the SLO
    batch: int = 0  # concurrent requests (all micro-batches)
    tpot_s: float = 0.0
    ttft_s: float = 0.0
    kv_tokens: int = 0  # KV-cache capacity of the replica, tokens


def _ring_allreduce(nbytes, tp: int, gpu: GpuType, eff: Efficiency):
    if tp == 1:
        return 0.0 * nbytes
    return 2 * (tp - 1) / tp * nbytes / (gpu.link_bandwidth * eff.comm_efficiency) \
        + 2 * (tp - 1) * gpu.link_latency


def stage_weight_bytes(model: ModelConfig, config: ReplicaConfig, index: int) -> float:
    """Weight bytes held by each GPU of stage `index` (embedding on the first, head on last)."""
    stage = config.stages[index]
    total = stage.layers * model.layer_bytes
    total += model.embedding_bytes * ((index == 0) + (index == config.pp - 1))
    return total / stage.tp


def kv_bytes_per_token_per_gpu(model: ModelConfig, stage: Stage) -> float:
    """KV bytes one token costs on each GPU of a stage (KV heads replicate when tp > kv_heads)."""
    heads_per_gpu = max(model.kv_heads / stage.tp, 1.0)
    return stage.layers * 2 * heads_per_gpu * model.head_dim * 2


def check_layout(model: ModelConfig, config: ReplicaConfig) -> str:
    """Why the layout is invalid for the model, or "" when it is valid."""
    if sum(stage.layers for stage in config.stages) != model.layers:
        return f"stages hold {sum(s.layers for s in config.stages)} of {model.layers} layers"
    for stage in config.stages:
        if stage.layers < 1:
            return "a stage holds no layers"
        if model.heads % stage.tp:
            return f"{model.heads} attention heads do not split over tp={stage.tp}"
    return ""


def estimate(model: ModelConfig, config: ReplicaConfig, workload: Workload,
             catalog: dict[str, GpuType], eff: Efficiency = DEFAULT_EFFICIENCY) -> ReplicaPerf:
    """Fit check and SLO-bound throughput (requests/s) of one replica; see the module doc."""
    invalid = check_layout(model, config)
    if invalid:
        return ReplicaPerf(False, invalid)
    context = workload.prompt_tokens + workload.output_tokens
    mean_context = workload.prompt_tokens + workload.output_tokens / 2
    kv_tokens = np.inf
    for index, stage in enumerate(config.stages):
        gpu = catalog[stage.gpu]
        weights = stage_weight_bytes(model, config, index)
        free = gpu.memory_bytes * eff.memory_utilization - eff.activation_reserve_bytes - weights
        if free <= 0:
            return ReplicaPerf(False, f"weights need {weights / 2**30:.1f} GiB per {stage.gpu}, "
                               f"{(weights + free) / 2**30:.1f} GiB usable")
        kv_tokens = min(kv_tokens, free / kv_bytes_per_token_per_gpu(model, stage))
    max_requests = int(kv_tokens // context)
    if max_requests < 1:
        return ReplicaPerf(False, f"KV cache holds {int(kv_tokens)} tokens, a request needs "
                           f"{context}", kv_tokens=int(kv_tokens))
    pp = config.pp
    if max_requests < pp:
        return ReplicaPerf(False, f"KV cache holds {max_requests} request(s), fewer than the "
                           f"{pp} pipeline micro-batches", kv_tokens=int(kv_tokens))
    micro = np.arange(1, max(1, min(max_requests, eff.max_batch) // pp) + 1, dtype=float)
    step = np.zeros_like(micro)
    prefill_latency = 0.0
    for index, stage in enumerate(config.stages):
        gpu = catalog[stage.gpu]
        weights = stage_weight_bytes(model, config, index)
        params = weights * stage.tp / model.bytes_per_param
        bandwidth = gpu.bandwidth * gpu.bandwidth_efficiency
        flops = gpu.flops * gpu.flops_efficiency * stage.tp
        kv_read = micro * mean_context * kv_bytes_per_token_per_gpu(model, stage)
        attention = 4 * micro * mean_context * model.hidden * stage.layers
        decode = np.maximum((weights + kv_read) / bandwidth,
                            (2 * params * micro + attention) / flops)
        decode += stage.layers * 2 * _ring_allreduce(micro * model.hidden * 2, stage.tp, gpu, eff)
        prompt = workload.prompt_tokens
        prefill = (2 * params * prompt + 2 * stage.layers * prompt**2 * model.hidden) / flops
        prefill += stage.layers * 2 * _ring_allreduce(prompt * model.hidden * 2, stage.tp, gpu,
                                                      eff)
        if index < pp - 1:
            link, latency = _pipeline_link(config, index, catalog)
            decode += micro * model.hidden * 2 / (link * eff.comm_efficiency) + latency
            prefill += prompt * model.hidden * 2 / (link * eff.comm_efficiency) + latency
        prefill_latency += prefill
        step = np.maximum(step, decode + eff.step_overhead_s
                          + micro / workload.output_tokens * prefill)
    throughput = micro / (workload.output_tokens * step)
    tpot = pp * step
    ttft = prefill_latency + tpot
    ok = (tpot <= workload.tpot_slo_s) & (ttft <= workload.ttft_slo_s)
    if not ok.any():
        return ReplicaPerf(False, f"misses the SLO even at batch 1: {tpot[0] * 1e3:.0f} ms per "
                           f"output token (SLO {workload.tpot_slo_s * 1e3:.0f} ms), "
                           f"{ttft[0]:.2f} s to first token (SLO {workload.ttft_slo_s:.2f} s)",
                           kv_tokens=int(kv_tokens))
    best = int(np.argmax(np.where(ok, throughput, -1.0)))
    return ReplicaPerf(True, "", float(throughput[best]), int(micro[best]) * pp,
                       float(tpot[best]), float(ttft[best]), int(kv_tokens))


def _pipeline_link(config: ReplicaConfig, index: int, catalog: dict[str, GpuType]):
    """Stages of one GPU type within a node share its link; other hops cross the network."""
    here, there = config.stages[index], config.stages[index + 1]
    if here.gpu == there.gpu and config.n_gpus <= 8 and not config.mixed:
        gpu = catalog[here.gpu]
        return gpu.link_bandwidth, gpu.link_latency
    return NETWORK_BANDWIDTH, NETWORK_LATENCY


def calibrate(samples: list[dict], model: ModelConfig, gpu: GpuType) -> dict[str, float]:
    """Fit a GPU type's efficiencies from a few single-GPU measurements.

    Each sample is `{"kind": "decode", "batch": B, "context": C, "seconds": s}` (one decode
    step) or `{"kind": "prefill", "prompt_tokens": P, "seconds": s}` (one prefill). Returns
    `{"bandwidth_efficiency": ..., "flops_efficiency": ...}` (medians of ideal / measured) for
    the GPU override file; a kind without samples keeps the current value.
    """
    stage = Stage(gpu.name, 1, model.layers)
    bandwidth_fits, flops_fits = [], []
    for sample in samples:
        seconds = float(sample["seconds"])
        if sample["kind"] == "decode":
            nbytes = model.weight_bytes + sample["batch"] * sample["context"] \
                * kv_bytes_per_token_per_gpu(model, stage)
            bandwidth_fits.append(nbytes / (gpu.bandwidth * seconds))
        elif sample["kind"] == "prefill":
            prompt = sample["prompt_tokens"]
            work = 2 * model.params * prompt + 2 * model.layers * prompt**2 * model.hidden
            flops_fits.append(work / (gpu.flops * seconds))
    return {"bandwidth_efficiency": float(np.median(bandwidth_fits)) if bandwidth_fits
            else gpu.bandwidth_efficiency,
            "flops_efficiency": float(np.median(flops_fits)) if flops_fits
            else gpu.flops_efficiency}
