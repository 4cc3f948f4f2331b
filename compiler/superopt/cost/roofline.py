"""Roofline cost of a µGraph on a GPU spec: per kernel, the DRAM bytes it actually moves, its
FLOPs, its grid's wave quantization and a launch overhead; the superoptimizer ranks candidates
by the total. Every time here is an estimate; `with_measurements` is where a GPU runner (Triton
`do_bench`) attaches measured times, and reports say which kind they hold.

Model, per kernel:

* library op (cuBLAS-like): reads each input and writes each output once;
* graph-defined kernel: every block loads its input tiles every loop iteration (an input with
  no for-loop dim once), so an input not split along a grid axis is re-read by every block on
  that axis; outputs are written once. No L2 reuse is credited.
* FLOPs: tile-op work (matmul 2·M·N·K, reductions and accumulators per input element, others
  per output element) × flops_per_element × blocks × loop iterations for in-loop ops; matmul
  runs on tensor cores, the rest on CUDA cores.
* time = launch + max(bytes / bandwidth, flops / peak) / utilization, where utilization is
  the tail loss of running `blocks` on the SMs (blocks sharing an SM share its throughput, so
  time steps at multiples of the SM count). Library ops are taken to fill the GPU (split-K,
  stream-K); block kernels keep the grid they were given.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..mugraph.model import (
    NO_DIM,
    BlockGraph,
    KernelOp,
    MuGraph,
    block_shapes,
    kernel_shapes,
    shared_memory_bytes,
)
from ..mugraph.ops import BLOCK_OPS, LIBRARY_OPS, MuGraphError, TileOp
from .hardware import GpuSpec

# A kernel launch (driver + grid start + drain) costs a few microseconds (REFERENCE-DATA.md);
# CUDA graphs hide part of it, so 3 µs is a middle value. It is what makes fusion pay on
# small workloads.
LAUNCH_OVERHEAD_US = 3.0

# Achievable fractions of datasheet peaks, calibrated on the measurements in REFERENCE-DATA.md:
# a large H100 copy moved 3.0 of 3.35 TB/s (H200: 4.3 of 4.8); an 8192³ bf16 matmul ran at
# 798 of 989 TF/s. CUDA-core math gets the matmul fraction for want of a measurement.
DRAM_EFFICIENCY = 0.90
MATMUL_EFFICIENCY = 0.80
VECTOR_EFFICIENCY = 0.80

# Loop inputs would be double-buffered by a pipelined kernel; the renderers load then sync, so
# shared memory follows mugraph.model.shared_memory_bytes (one slot per tile). Kept for bench.
PIPELINE_STAGES = 2

# Nominal tiling of vendor library kernels, only to report a block count.
LIBRARY_MATMUL_TILE = 128  # output rows and columns per block
LIBRARY_ELEMENTS_PER_BLOCK = 4096  # 256 threads × 16 elements
LIBRARY_THREADS = 256

ESTIMATED, MEASURED = "estimated", "measured"


@dataclass(frozen=True)
class KernelCost:
    """One kernel's row of a cost report. Times in µs; `waves` counts rounds of resident blocks
    (SMs × blocks per SM); `utilization` is the share of SM time doing useful work."""

    name: str
    kind: str  # "library" | "block"
    flops: int
    matmul_flops: int
    dram_bytes: int
    blocks: int
    blocks_per_sm: int
    waves: int
    utilization: float
    smem_bytes: int
    est_time_us: float
    bound: str  # "memory" | "compute" | "launch"
    measured_time_us: float | None = None

    @property
    def time_us(self) -> float:
        return self.est_time_us if self.measured_time_us is None else self.measured_time_us


@dataclass(frozen=True)
class CostReport:
    graph: str
    gpu: str
    dtype_bytes: int
    kernels: tuple[KernelCost, ...]

    @property
    def flops(self) -> int:
        return sum(k.flops for k in self.kernels)

    @property
    def dram_bytes(self) -> int:
        return sum(k.dram_bytes for k in self.kernels)

    @property
    def est_time_us(self) -> float:
        return sum(k.est_time_us for k in self.kernels)

    @property
    def source(self) -> str:
        """"measured" when every kernel has a measured time, else "estimated"."""
        measured = self.kernels and all(k.measured_time_us is not None for k in self.kernels)
        return MEASURED if measured else ESTIMATED

    @property
    def time_us(self) -> float:
        """Measured total when there is one, else the estimate; `source` says which."""
        if self.source == MEASURED:
            return sum(k.measured_time_us for k in self.kernels)
        return self.est_time_us

    def to_json(self) -> dict:
        return {"graph": self.graph, "gpu": self.gpu, "dtype_bytes": self.dtype_bytes,
                "source": self.source, "time_us": self.time_us,
                "est_time_us": self.est_time_us, "flops": self.flops,
                "dram_bytes": self.dram_bytes,
                "kernels": [dataclasses.asdict(k) for k in self.kernels]}


def with_measurements(report: CostReport, times_us: list[float]) -> CostReport:
    """The report with measured per-kernel times (e.g. from triton.testing.do_bench on a GPU)."""
    if len(times_us) != len(report.kernels):
        raise ValueError(f"{len(times_us)} measured times for {len(report.kernels)} kernels")
    kernels = tuple(dataclasses.replace(k, measured_time_us=float(t))
                    for k, t in zip(report.kernels, times_us))
    return dataclasses.replace(report, kernels=kernels)


# ---- work per op: how many elements an op's flops_per_element applies to ------------------

def _matmul_work(ins, out):
    return math.prod(out) * ins[0][-1]


def _input_work(ins, out):
    return math.prod(ins[0])


def _output_work(ins, out):
    return math.prod(out)


WORK_BY_FAMILY = {"matmul": _matmul_work, "reduce": _input_work, "accum": _input_work}


def op_flops(row: TileOp, ins: list[tuple[int, ...]], out: tuple[int, ...]) -> int:
    """FLOPs of one execution of a library or tile op on these shapes."""
    return row.flops_per_element * WORK_BY_FAMILY.get(row.family, _output_work)(ins, out)


# ---- kernels -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Work:
    """What a kernel asks of the GPU before timing."""

    flops: int
    matmul_flops: int
    dram_bytes: int
    blocks: int
    threads: int
    smem_bytes: int


def _library_work(op: KernelOp, shapes: dict, dtype_bytes: int) -> _Work:
    row = LIBRARY_OPS[op.op]
    ins = [shapes[t] for t in op.inputs]
    out = shapes[op.outputs[0]]
    flops = op_flops(row, ins, out)
    moved = sum(math.prod(s) for s in ins) + math.prod(out)
    if row.family == "matmul":
        tiles = math.ceil(out[-2] / LIBRARY_MATMUL_TILE) * math.ceil(out[-1] / LIBRARY_MATMUL_TILE)
        blocks = math.prod(out[:-2]) * tiles
    else:
        elements = max(math.prod(s) for s in [*ins, out])
        blocks = math.ceil(elements / LIBRARY_ELEMENTS_PER_BLOCK)
    matmul = flops if row.family == "matmul" else 0
    return _Work(flops, matmul, moved * dtype_bytes, blocks, LIBRARY_THREADS, 0)


def _runs_in_loop(family: str, phase: str) -> bool:
    """Accumulators work every iteration; so do tiles computed in the loop."""
    return family == "accum" or phase in ("loop", "both")


def _block_work(block: BlockGraph, source_shapes: list, dtype_bytes: int) -> _Work:
    info = block_shapes(block, source_shapes)
    blocks, loop = block.num_blocks, block.forloop_range
    moved = sum(math.prod(s) for s in info.outputs)  # saved once
    for inp in block.inputs:
        loads = loop if inp.fmap != NO_DIM else 1
        moved += math.prod(info.tiles[inp.tile]) * loads * blocks
    flops = matmul = 0
    for op in block.ops:
        row = BLOCK_OPS[op.op]
        runs = loop if _runs_in_loop(row.family, info.phase[op.output]) else 1
        work = op_flops(row, [info.tiles[t] for t in op.inputs], info.tiles[op.output])
        flops += work * runs * blocks
        matmul += work * runs * blocks if row.family == "matmul" else 0
    # the one shared-memory rule: what the rendered kernel really allocates (occupancy too)
    smem = shared_memory_bytes(block, source_shapes)
    return _Work(flops, matmul, moved * dtype_bytes, blocks, block.threads, smem)


def blocks_per_sm(work: _Work, gpu: GpuSpec) -> int:
    """Resident blocks per SM, limited by threads, shared memory and the block-slot count."""
    limits = [gpu.max_blocks_per_sm, gpu.max_threads_per_sm // work.threads]
    if work.smem_bytes:
        limits.append(gpu.smem_per_sm // work.smem_bytes)
    return max(min(limits), 0)


def _check_fits(name: str, work: _Work, gpu: GpuSpec) -> None:
    if work.smem_bytes > gpu.smem_per_block:
        raise MuGraphError(f"kernel {name}: tiles need {work.smem_bytes} bytes of shared memory "
                           f"(fp32 slots); {gpu.name} allows "
                           f"{gpu.smem_per_block} per block — shrink the tiles (larger grid or "
                           "forloop_range)")
    if work.threads > gpu.max_threads_per_block:
        raise MuGraphError(f"kernel {name}: {work.threads} threads per block; {gpu.name} allows "
                           f"{gpu.max_threads_per_block}")


def time_kernel(name: str, kind: str, work: _Work, gpu: GpuSpec, dtype_bytes: int) -> KernelCost:
    """Roofline time of one kernel (see the module docstring)."""
    _check_fits(name, work, gpu)
    resident = blocks_per_sm(work, gpu)
    waves = math.ceil(work.blocks / (gpu.sm_count * resident))
    if kind == "library":
        utilization = 1.0
    else:  # the busiest SM runs ceil(blocks / SMs) blocks' worth of work
        utilization = work.blocks / (math.ceil(work.blocks / gpu.sm_count) * gpu.sm_count)
    memory_s = work.dram_bytes / (gpu.dram_bandwidth * DRAM_EFFICIENCY)
    compute_s = (work.matmul_flops / (gpu.matmul_flops(dtype_bytes) * MATMUL_EFFICIENCY)
                 + (work.flops - work.matmul_flops) / (gpu.fp32_flops * VECTOR_EFFICIENCY))
    busy_us = max(memory_s, compute_s) / utilization * 1e6
    if busy_us <= LAUNCH_OVERHEAD_US:
        bound = "launch"
    else:
        bound = "memory" if memory_s >= compute_s else "compute"
    return KernelCost(name, kind, work.flops, work.matmul_flops, work.dram_bytes, work.blocks,
                      resident, waves, utilization, work.smem_bytes,
                      LAUNCH_OVERHEAD_US + busy_us, bound)


def estimate(graph: MuGraph, gpu: GpuSpec, dtype_bytes: int = 2) -> CostReport:
    """Estimated cost of every kernel of `graph` on `gpu`, elements of `dtype_bytes` bytes.

        >>> report = estimate(graph, load_gpu("h100"))
        >>> report.est_time_us, report.kernels[0].bound
    """
    shapes = kernel_shapes(graph)  # validates the whole graph first
    rows = []
    for index, op in enumerate(graph.ops):
        name = op.name or f"{op.op}#{index}"
        if op.op == "block":
            work = _block_work(op.block, [shapes[t] for t in op.inputs], dtype_bytes)
            rows.append(time_kernel(name, "block", work, gpu, dtype_bytes))
        else:
            work = _library_work(op, shapes, dtype_bytes)
            rows.append(time_kernel(name, "library", work, gpu, dtype_bytes))
    return CostReport(graph.name, gpu.name, dtype_bytes, tuple(rows))
