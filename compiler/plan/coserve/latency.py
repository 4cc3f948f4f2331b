"""Iteration latency and memory of one co-serving replica (a model on `tp` GPUs of one type):
a roofline of one serving iteration, the finetuning costs in the scheduler's token units, the
memory split, and the linear `LatencyModel` the scheduler plans with, fitted to the roofline.

One iteration reads every weight once and every attended KV entry once (bandwidth), and runs
2 * params FLOPs per token plus 4 * hidden * layers FLOPs per attended KV entry (compute); it
takes the slower of the two at the GPU's calibrated efficiencies (coral's `GpuType`: 75% of
datasheet bandwidth, 55% of dense FLOP/s), plus two ring all-reduces per layer under tensor
parallelism and a fixed step overhead. "Context" is the sum of attended KV lengths over the
batch's sequences (see scheduler.py); a prefill chunk's quadratic attention term is left out
(under 1% of its FLOPs for chunks of a few hundred tokens).

LoRA finetuning: a forward token costs what an inference token costs. The backward of one layer
over the whole sequence costs `backward_factor` (default 2) times its forward: 1x for the input
gradients of the frozen matmuls (they need no weight gradients) and about 1x for attention's
backward and the rematerialized cheap activations, plus the LoRA gradients themselves.

    >>> from mlc.compiler.plan.models import load_model_config
    >>> replica = Replica(load_model_config("llama-3.1-8b"), gpu_type("a100-80gb"), tp=1)
    >>> round(replica.seconds(1, 0) * 1e3, 1)  # 16.06 GB / (2.04 TB/s * 0.75) + 2 ms
    12.5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from mlc.compiler.errors import MlcError

from ..coral.catalog import GpuType, gpu_type
from ..coral.perf import DEFAULT_EFFICIENCY, Efficiency, Stage, _ring_allreduce
from ..coral.perf import kv_bytes_per_token_per_gpu as _kv_bytes_per_gpu
from ..models import ModelConfig
from .scheduler import LatencyModel

__all__ = ["FinetuneShape", "MemorySplit", "Replica", "gpu_type"]

GiB = 2**30
LORA_STATE_BYTES = 16  # per LoRA parameter: bf16 weight + bf16 grad + fp32 master, Adam m, v


@dataclass(frozen=True)
class FinetuneShape:
    """The LoRA finetuning job: adapter rank and the length of its training sequences."""

    lora_rank: int = 16
    sequence_tokens: int = 1024
    backward_factor: float = 2.0


@dataclass(frozen=True)
class MemorySplit:
    """Bytes per GPU of a replica; `kv_tokens` is the KV capacity of the whole replica."""

    weights: float
    kv_cache: float
    finetune_activations: float
    lora_state: float
    reserve: float
    kv_tokens: int

    def as_dict(self) -> dict:
        return {"weights": int(self.weights), "kv_cache": int(self.kv_cache),
                "finetune_activations": int(self.finetune_activations),
                "lora_state": int(self.lora_state), "reserve": int(self.reserve),
                "kv_tokens": self.kv_tokens}


@dataclass(frozen=True)
class Replica:
    """A model on `tp` GPUs of one type, with the efficiency factors of coral's perf model."""

    model: ModelConfig
    gpu: GpuType
    tp: int = 1
    eff: Efficiency = DEFAULT_EFFICIENCY

    @property
    def kv_bytes_per_token(self) -> float:
        """KV bytes one token costs on each GPU (KV heads replicate when tp > kv_heads)."""
        return _kv_bytes_per_gpu(self.model, Stage(self.gpu.name, self.tp, self.model.layers))

    def seconds(self, tokens, context):
        """Roofline seconds of one iteration; numpy arrays broadcast (see the module doc)."""
        model, gpu = self.model, self.gpu
        tokens = np.asarray(tokens, dtype=float)
        context = np.asarray(context, dtype=float)
        read = model.weight_bytes / self.tp + context * self.kv_bytes_per_token
        work = (2 * model.params * tokens + 4 * model.hidden * model.layers * context) / self.tp
        compute = np.maximum(read / (gpu.bandwidth * gpu.bandwidth_efficiency),
                             work / (gpu.flops * gpu.flops_efficiency))
        comm = model.layers * 2 * _ring_allreduce(tokens * model.hidden * 2, self.tp, gpu,
                                                  self.eff)
        total = compute + comm + self.eff.step_overhead_s
        return float(total) if total.ndim == 0 else total

    def lora_params(self, rank: int) -> int:
        """LoRA parameters on q, k, v, o of every layer: rank * (fan_in + fan_out) each."""
        model = self.model
        q_out, kv_out = model.heads * model.head_dim, model.kv_heads * model.head_dim
        per_layer = (model.hidden + q_out) * 2 + (model.hidden + kv_out) * 2
        return model.layers * rank * per_layer

    def backward_layer_tokens(self, finetune: FinetuneShape) -> float:
        """Token-equivalents of one layer's backward over the whole finetuning sequence."""
        layer_params = self.model.params / self.model.layers
        lora_share = 4 * self.lora_params(finetune.lora_rank) / self.model.layers \
            / (2 * layer_params)  # weight and input gradients of the adapter, per forward
        return finetune.sequence_tokens / self.model.layers \
            * (finetune.backward_factor + lora_share)

    def memory(self, finetune: FinetuneShape, max_sequence: int) -> MemorySplit:
        """Per-GPU memory: weights, LoRA state, finetuning activations, the rest KV cache.

        Activations kept for the backward (graph pruning): per token and layer the LoRA inputs
        (hidden for q/k/v, heads*head_dim for o) and the attention query buffer, plus one
        layer's workspace (hidden + 2 * ffn per token). Raises MlcError when the weights and
        these do not leave KV room for one `max_sequence`-token request and the finetuning
        sequence, saying by how much memory falls short.
        """
        model = self.model
        tokens = finetune.sequence_tokens
        q_width = model.heads * model.head_dim
        kept = tokens * model.layers * (model.hidden + 2 * q_width) * 2
        workspace = tokens * (model.hidden + 2 * model.ffn) * 2
        activations = (kept + workspace) / self.tp
        lora = self.lora_params(finetune.lora_rank) * LORA_STATE_BYTES / self.tp
        weights = model.weight_bytes / self.tp
        usable = self.gpu.memory_bytes * self.eff.memory_utilization
        reserve = self.eff.activation_reserve_bytes
        kv = usable - reserve - weights - activations - lora
        needed = (max_sequence + tokens) * self.kv_bytes_per_token
        if kv < needed:
            short = needed - kv
            raise MlcError(
                f"{model.name} does not fit {self.tp} x {self.gpu.name}: per GPU it needs "
                f"{(weights + activations + lora + reserve + needed) / GiB:.1f} GiB (weights "
                f"{weights / GiB:.1f}, finetuning {(activations + lora) / GiB:.1f}, KV for one "
                f"request {needed / GiB:.2f}, reserve {reserve / GiB:.1f}) but "
                f"{usable / GiB:.1f} GiB is usable: short by {short / GiB:.1f} GiB; use more "
                "tensor parallelism (--tp) or a larger GPU")
        return MemorySplit(weights, kv, activations, lora, reserve,
                           int(kv / self.kv_bytes_per_token))

    def latency_model(self, max_tokens: int, max_context: int) -> LatencyModel:
        """The tightest linear upper bound of the roofline on a 16 x 16 grid up to the given
        batch: non-negative coefficients minimizing the total over-prediction subject to never
        under-predicting (a linear program). A plan the scheduler predicts within the SLO is
        then within it on the roofline too; `LatencyModel.fit` is the least-squares
        alternative for measured samples."""
        tokens, context = np.meshgrid(np.linspace(1, max(max_tokens, 2), 16),
                                      np.linspace(0, max(max_context, 1), 16))
        seconds = self.seconds(tokens, context).ravel()
        design = np.column_stack([np.ones(seconds.size), tokens.ravel(), context.ravel()])
        scale = design.max(axis=0)  # unit columns keep the solver well conditioned
        result = linprog(design.sum(axis=0) / scale, A_ub=-design / scale, b_ub=-seconds,
                         bounds=[(0, None)] * 3, method="highs")
        if not result.success:  # a least-squares fit raised to a bound as the fallback
            fitted = LatencyModel.fit(list(zip(tokens.ravel(), context.ravel(), seconds)))
            under = float(np.max(seconds - fitted.predict(tokens.ravel(), context.ravel())))
            return LatencyModel(fitted.base + max(under, 0.0), fitted.per_token,
                                fitted.per_context)
        base, per_token, per_context = result.x / scale
        return LatencyModel(float(base), float(per_token), float(per_context))
