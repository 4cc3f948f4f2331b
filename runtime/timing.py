"""Wall-clock latency of in-process calls: warm-up, timed repeats, and the summary statistics
`mlc run --repeat` and the benchmarks report (min / median / p90 in milliseconds)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlc.compiler.ir.graph import Graph


@dataclass(frozen=True)
class Latency:
    """Summary of timed calls, in milliseconds."""

    min: float
    median: float
    p90: float

    def as_dict(self) -> dict[str, float]:
        return {"min": self.min, "median": self.median, "p90": self.p90}


def nearest_rank(samples: Sequence[float], percent: float) -> float:
    """The `percent`-th percentile by the nearest-rank method: the smallest sample such that
    at least `percent`% of the samples are <= it (always one of the samples, no interpolation).

    Requires: samples non-empty, 0 < percent <= 100.

    >>> nearest_rank([5.0, 1.0, 3.0, 2.0, 4.0], 90)
    5.0
    """
    if not samples:
        raise ValueError("nearest_rank needs at least one sample")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    ordered = sorted(samples)
    rank = math.ceil(percent / 100 * len(ordered))  # 1-based
    return ordered[rank - 1]


def summarize(seconds: Sequence[float]) -> Latency:
    """min / median / p90 (nearest rank) of per-call times given in seconds, as milliseconds.

    Ensures: min <= median <= p90 (the median of an even count averages the middle two, which
    never exceeds the nearest-rank p90 since that rank is at or above the upper middle).
    """
    millis = [s * 1e3 for s in seconds]
    return Latency(min(millis), statistics.median(millis), nearest_rank(millis, 90))


def time_calls(call: Callable[[], object], repeat: int, warmup: int = 0) -> list[float]:
    """Call `call()` `warmup` times untimed, then `repeat` times, each timed with
    time.perf_counter; returns the `repeat` durations in seconds, in call order.

    Requires: repeat >= 1, warmup >= 0.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got {repeat}, {warmup}")
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


def fused_region_path(graph: Graph, executor: str) -> str:
    """How `mlc.runtime.run(graph, ..., executor=executor)` executes the graph's fused regions
    (MuGraphCall nodes): "none" when there are none, else the paths runtime/fused.py recorded
    for the calls made since its reset_paths() ("cpu-kernels": compiled C++ kernels,
    "torch-interpreted": each µGraph interpreted with torch ops), else "torch-interpreted" or
    "reference-interpreted" (the numpy interpreter, which the torch executor also falls back to
    for dtypes torch lacks)."""
    if not any(node.op == "MuGraphCall" for node in graph.nodes):
        return "none"
    from .fused import PATHS
    if executor == "torch" and PATHS:  # what the calls so far really took (fused.py)
        return "+".join(sorted(PATHS))
    if executor == "torch":
        from .torch_executor import unsupported_dtypes
        if not unsupported_dtypes(graph):
            return "torch-interpreted"
    return "reference-interpreted"


def time_interleaved(calls: dict[str, Callable[[], object]], repeat: int, warmup: int = 1,
                     max_seconds: float | None = None,
                     min_repeat: int = 3) -> dict[str, list[float]]:
    """Time several contenders round-robin: each round calls every contender once, in order, so
    a slow drift of the machine (another process, clock boost) hits all of them alike.

    `warmup` untimed rounds come first. After `min_repeat` timed rounds, stops early once
    `max_seconds` of wall time have passed since the timed rounds began. Returns each name's
    durations in seconds, all of the same length (between min(min_repeat, repeat) and repeat).

    Requires: repeat >= 1, warmup >= 0.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got {repeat}, {warmup}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    durations: dict[str, list[float]] = {name: [] for name in calls}
    began = time.perf_counter()
    for done in range(repeat):
        if (max_seconds is not None and done >= min_repeat
                and time.perf_counter() - began > max_seconds):
            break
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            durations[name].append(time.perf_counter() - start)
    return durations
