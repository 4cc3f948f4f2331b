"""Timing samples for the scheduler's iteration latency model: (tokens, context tokens attended,
seconds) for inference iterations, and the cost of one layer of finetuning backward."""

from __future__ import annotations

import statistics
import time

import torch

from .finetune import FinetuneJob
from .kv_cache import KVCache
from .model import LlamaModel, Segment


def _filled_cache(model: LlamaModel, tokens: int, generator: torch.Generator) -> KVCache:
    cache = model.new_cache()
    if tokens:
        ids = torch.randint(0, model.config.vocab, (tokens,), generator=generator).tolist()
        with torch.no_grad():
            model.forward_segments([Segment("p", ids)], {"p": cache})
    return cache


def _copy(cache: KVCache) -> KVCache:
    """A cache sharing the stored tensors (extend makes new ones, so the original is kept)."""
    copy = KVCache(len(cache.keys))
    copy.keys, copy.values = list(cache.keys), list(cache.values)
    return copy


def profile_latency(model: LlamaModel, token_counts=(1, 4, 16, 32, 64), contexts=(0, 64, 256),
                    repeats: int = 3, seed: int = 0) -> list[tuple[int, int, float]]:
    """Median seconds of an inference iteration of `tokens` new tokens, one chunk of a sequence
    with `context` cached tokens, for every pair. Ensures: one (tokens, KV entries attended =
    context + tokens, seconds) sample per pair, the scheduler's notion of context."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for context in contexts:
        cache = _filled_cache(model, context, generator)
        for tokens in token_counts:
            ids = torch.randint(0, model.config.vocab, (tokens,), generator=generator).tolist()
            times = []
            for _ in range(repeats + 1):  # the first run warms up allocations
                fresh = {"p": _copy(cache)}
                began = time.perf_counter()
                with torch.no_grad():
                    model.forward_segments([Segment("p", ids)], fresh).argmax(-1)
                times.append(time.perf_counter() - began)
            samples.append((tokens, context + tokens, statistics.median(times[1:])))
    return samples


def backward_layer_seconds(model: LlamaModel, sequence_tokens: int = 64, repeats: int = 2,
                           seed: int = 0) -> float:
    """Median seconds of one layer of finetuning backward for a sequence of that many tokens.
    Leaves the adapter as it was (the measured job never reaches an optimizer step)."""
    generator = torch.Generator().manual_seed(seed)
    layers, times = len(model.layers), []
    for _ in range(repeats):
        tokens = torch.randint(0, model.config.vocab, (sequence_tokens + 1,),
                               generator=generator).tolist()
        job = FinetuneJob(model, [tokens], accumulation=2)
        job.forward_chunk(sequence_tokens)
        began = time.perf_counter()
        job.backward_layers(layers)
        times.append((time.perf_counter() - began) / layers)
    for param in model.lora_parameters():
        param.grad = None
    return statistics.median(times)
