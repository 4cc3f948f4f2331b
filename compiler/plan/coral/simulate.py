"""A small discrete-event simulation of a plan under Poisson arrivals: does it meet demand?

Each replica is `batch` concurrent slots; a request holds a slot for `batch / throughput`
seconds (so a full replica completes `throughput` requests/s, the performance model's figure)
and waits in the replica's FIFO queue when all slots are busy. Arrivals go to the replica with
the lowest load (busy + queued) per slot.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SimResult:
    """Per model: measured served rate, utilization, and queueing delay."""

    demand: float
    served_rate: float  # completions/s after warm-up
    utilization: float  # busy slot-seconds / slot-seconds
    mean_wait_s: float
    p99_wait_s: float
    within_ttft: float  # fraction of requests that started within the TTFT SLO


def simulate_model(replicas: list[tuple[float, int]], demand: float, ttft_slo_s: float = 5.0,
                   max_arrivals: int = 20000, horizon_s: float = 600.0, seed: int = 0
                   ) -> SimResult:
    """Simulate one model's replicas, given as (throughput req/s, batch slots) pairs."""
    if demand <= 0 or not replicas:
        return SimResult(demand, 0.0, 0.0, 0.0, 0.0, 0.0 if demand > 0 else 1.0)
    rng = np.random.default_rng(seed)
    duration = min(horizon_s, max_arrivals / demand)
    arrivals = np.cumsum(rng.exponential(1.0 / demand, size=int(demand * duration * 1.2) + 10))
    arrivals = arrivals[arrivals < duration]
    warmup = 0.1 * duration
    service = [batch / rate for rate, batch in replicas]
    slots = np.array([batch for _, batch in replicas], dtype=float)
    # per replica: requests running and queued; numpy so that picking the least-loaded replica
    # for each arrival is one vector op (a plan may hold tens of thousands of replicas)
    busy = np.zeros(len(replicas), dtype=np.int64)
    waiting = np.zeros(len(replicas), dtype=np.int64)
    queues: list[list[float]] = [[] for _ in replicas]
    heads = [0] * len(replicas)
    events: list[tuple[float, int]] = []  # (completion time, replica)
    busy_time = np.zeros(len(replicas))
    waits, completed = [], 0

    def start(replica: int, arrived: float, now: float):
        busy[replica] += 1
        finish = now + service[replica]
        heapq.heappush(events, (finish, replica))
        overlap = max(0.0, min(finish, duration) - max(now, warmup))
        busy_time[replica] += overlap
        if arrived >= warmup:
            waits.append(now - arrived)

    def finish_until(limit: float) -> int:
        """Complete every request finishing by `limit`, starting queued ones; returns how many
        completed after the warm-up."""
        done = 0
        while events and events[0][0] <= limit:
            now, replica = heapq.heappop(events)
            busy[replica] -= 1
            done += now >= warmup
            if heads[replica] < len(queues[replica]):
                start(replica, queues[replica][heads[replica]], now)
                heads[replica] += 1
                waiting[replica] -= 1
        return done

    for arrived in arrivals:
        completed += finish_until(arrived)
        target = int(np.argmin((busy + waiting) / slots))
        if busy[target] < slots[target]:
            start(target, arrived, arrived)
        else:
            queues[target].append(arrived)
            waiting[target] += 1
    completed += finish_until(duration)
    window = duration - warmup
    waits_array = np.array(waits) if waits else np.zeros(1)
    queued = sum(len(q) - h for q, h in zip(queues, heads))
    started = len(waits) + queued
    return SimResult(
        demand=demand, served_rate=float(completed / window),
        utilization=float(busy_time.sum() / (window * slots.sum())),
        mean_wait_s=float(waits_array.mean()), p99_wait_s=float(np.quantile(waits_array, 0.99)),
        within_ttft=float((waits_array <= ttft_slo_s).sum() / max(started, 1)))
