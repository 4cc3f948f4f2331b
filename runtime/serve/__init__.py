"""A small LLM serving engine in torch: Llama-style decoder with KV cache and LoRA adapters,
continuous batching with chunked prefill, and token-level LoRA finetuning co-served with
inference.

    model.py     the decoder, packed forward over segments, LoRA projections
    kv_cache.py  per-sequence keys and values
    weights.py   safetensors with Hugging Face Llama names
    finetune.py  chunked forward, layer-by-layer backward, Adam on LoRA tensors
    engine.py    `ServingEngine.step(plan)`: the mechanism of one iteration
    loop.py      admit requests by arrival, plan with the scheduler, run
    profile.py   iteration timings for the scheduler's latency model
    trace.py     request traces and finetuning data (JSON lines)
    report.py    latencies, loss curve, summary documents
    session.py   one `mlc serve` run end to end
"""

from .engine import Request, ServingEngine, StepResult
from .finetune import FinetuneJob
from .model import LlamaModel, Segment

__all__ = ["FinetuneJob", "LlamaModel", "Request", "Segment", "ServingEngine", "StepResult"]
