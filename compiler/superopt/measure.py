"""Timing µGraphs on this machine: compile to a CPU kernel (kernels/cpu) and take the median
of repeated calls after a warm-up, on random float32 inputs of the µGraph's shapes.

Used by optimize on the CPU target to rank the search's best candidates by measurement instead
of by the roofline estimate (the estimate stays in the report beside it).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .mugraph import MuGraph

WARMUP = 2
REPEATS = 7


def time_mugraph(graph: MuGraph, warmup: int = WARMUP, repeats: int = REPEATS) -> float:
    """Median µs of `repeats` calls of the compiled kernel (MlcError: it cannot be built)."""
    from mlc.kernels.cpu import compile_mugraph

    kernel = compile_mugraph(graph)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(shape).astype(np.float32) for shape in graph.inputs.values()]
    for _ in range(warmup):
        kernel(*inputs)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        kernel(*inputs)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6
