"""Stage 1 (per model, cacheable): enumerate replica configurations of up to 8 GPUs and keep
the ones no other configuration dominates.

Configurations are data: homogeneous TP x PP on one GPU type, and mixed-type pipelines (two GPU
types, one tensor-parallel degree, layers split between the types around the bandwidth- and
memory-proportional splits). c' dominates c when it uses no more GPUs of any type and serves at
least as many requests/s; dropping dominated columns cannot change any stage-2 optimum (swap c
for c' in a solution: same or lower cost and GPU use, same or higher throughput), whatever the
prices, availability and demand rates, so stage 1 only reruns when the request shape, the SLO
or the hardware changes.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from ..models import ModelConfig
from .catalog import GpuType
from .perf import (
    DEFAULT_EFFICIENCY,
    Efficiency,
    ReplicaConfig,
    ReplicaPerf,
    Stage,
    Workload,
    estimate,
    homogeneous,
)

MAX_GPUS = 8
TP_DEGREES = (1, 2, 4, 8)
MIXED_TP_DEGREES = (1, 2, 4)
SPLIT_OFFSETS = (0, -2, 2)  # layer moves around each proportional split


@dataclass(frozen=True)
class Candidate:
    """A column of the stage-2 MILP: one replica configuration of one model and its estimate."""

    model: str
    config: ReplicaConfig
    perf: ReplicaPerf

    @property
    def gpu_counts(self) -> dict[str, int]:
        return self.config.gpu_counts

    def cost(self, catalog: dict[str, GpuType]) -> float:
        """$/hour of one replica at the catalog's prices."""
        return sum(catalog[gpu].price_per_hour * n for gpu, n in self.gpu_counts.items())


@dataclass
class Stage1Result:
    """One model's columns: `candidates` (pruned over all configurations), `homogeneous`
    (single-GPU-type ones pruned among themselves, for the baselines), `all_fitting` (unpruned,
    for the joint MILP), and why configurations failed when none fits."""

    model: str
    shape_key: tuple
    candidates: list[Candidate]
    homogeneous: list[Candidate]
    all_fitting: list[Candidate] = field(repr=False)
    enumerated: int = 0
    fitting: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # gpu type -> reason at 8 GPUs


def _split_evenly(gpu: str, tp: int, stages: int, layers: int) -> list[Stage]:
    base, extra = divmod(layers, stages)
    return [Stage(gpu, tp, base + (i < extra)) for i in range(stages)]


def homogeneous_configs(model: ModelConfig, gpus: list[str], max_gpus: int = MAX_GPUS
                        ) -> list[ReplicaConfig]:
    """TP in {1, 2, 4, 8} x PP in 1..8 per GPU type, tp * pp <= max_gpus."""
    return [homogeneous(gpu, tp, pp, model.layers)
            for gpu in gpus for tp in TP_DEGREES for pp in range(1, max_gpus // tp + 1)
            if tp * pp <= max_gpus and pp <= model.layers]


def layer_splits(model: ModelConfig, first: GpuType, second: GpuType, first_stages: int,
                 second_stages: int) -> list[int]:
    """Layers for the first GPU type's stages: around the splits proportional to each side's
    bandwidth and to its memory, clipped so every stage holds a layer."""
    lowest, highest = first_stages, model.layers - second_stages
    splits = set()
    for attribute in ("bandwidth", "memory_bytes"):
        share_first = getattr(first, attribute) * first_stages
        share = share_first / (share_first + getattr(second, attribute) * second_stages)
        for offset in SPLIT_OFFSETS:
            splits.add(min(highest, max(lowest, round(model.layers * share) + offset)))
    return sorted(splits)


def mixed_configs(model: ModelConfig, catalog: dict[str, GpuType], max_gpus: int = MAX_GPUS
                  ) -> list[ReplicaConfig]:
    """Two GPU types in one pipeline, one TP degree (vLLM needs one), all stage counts."""
    configs = []
    for name_a, name_b in itertools.combinations(sorted(catalog), 2):
        # the larger-memory type goes first: it holds the embedding
        first, second = sorted((catalog[name_a], catalog[name_b]),
                               key=lambda g: (-g.memory_bytes, g.name))
        for tp in MIXED_TP_DEGREES:
            for stages_a in range(1, max_gpus // tp):
                for stages_b in range(1, max_gpus // tp - stages_a + 1):
                    if stages_a + stages_b > model.layers:
                        continue
                    for layers_a in layer_splits(model, first, second, stages_a, stages_b):
                        configs.append(ReplicaConfig(tuple(
                            _split_evenly(first.name, tp, stages_a, layers_a)
                            + _split_evenly(second.name, tp, stages_b, model.layers - layers_a))))
    return configs


def prune_dominated(candidates: list[Candidate], gpus: list[str]) -> list[Candidate]:
    """The Pareto set: drop c when some c' uses <= GPUs of every type and serves >= req/s
    (exact ties keep the first). Same-vector variants (layer splits) collapse to their best
    first, which keeps the pairwise check small."""
    best: dict[tuple, Candidate] = {}
    for candidate in candidates:
        vector = tuple(candidate.gpu_counts.get(g, 0) for g in gpus)
        if vector not in best or candidate.perf.throughput > best[vector].perf.throughput:
            best[vector] = candidate
    if not best:
        return []
    unique = list(best.values())
    usage = np.array(list(best.keys()))
    rate = np.array([c.perf.throughput for c in unique])
    no_more = (usage[:, None, :] <= usage[None, :, :]).all(axis=2)  # [j, i]: j uses <= i
    # distinct vectors: j <= i everywhere means j < i somewhere, so >= rate suffices
    dominates = no_more & (rate[:, None] >= rate[None, :])
    np.fill_diagonal(dominates, False)
    keep = ~dominates.any(axis=0)
    kept = {id(c) for c, k in zip(unique, keep) if k}
    return [c for c in candidates if id(c) in kept]


def run_stage1(model: ModelConfig, workload: Workload, catalog: dict[str, GpuType],
               eff: Efficiency = DEFAULT_EFFICIENCY, max_gpus: int = MAX_GPUS,
               mixed: bool = True) -> Stage1Result:
    """Enumerate, estimate and prune one model's replica configurations."""
    start = time.perf_counter()
    gpus = sorted(catalog)
    configs = homogeneous_configs(model, gpus, max_gpus)
    if mixed:
        configs += mixed_configs(model, catalog, max_gpus)
    fitting, failures = [], {}
    for config in configs:
        perf = estimate(model, config, workload, catalog, eff)
        if perf.fits:
            fitting.append(Candidate(model.name, config, perf))
        elif not config.mixed and config.n_gpus == max_gpus:
            failures.setdefault(config.stages[0].gpu, perf.reason)
    fitting.sort(key=lambda c: (c.config.n_gpus, -c.perf.throughput, c.config.key))
    homogeneous_only = [c for c in fitting if not c.config.mixed]
    return Stage1Result(
        model=model.name, shape_key=workload.shape_key,
        candidates=prune_dominated(fitting, gpus),
        homogeneous=prune_dominated(homogeneous_only, gpus), all_fitting=fitting,
        enumerated=len(configs), fitting=len(fitting), seconds=time.perf_counter() - start,
        failures={g: r for g, r in failures.items()
                  if not any(c.gpu_counts.get(g) for c in homogeneous_only)})
