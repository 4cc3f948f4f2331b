"""The cost model: GPU specs load with the reference numbers; the roofline estimate counts
replicated-tile re-reads, picks the right bound, steps at SM multiples, and ranks fusion."""

from __future__ import annotations

import json
import math

import pytest

from mlc.compiler.errors import MlcError
from mlc.compiler.superopt.cost import (
    LAUNCH_OVERHEAD_US,
    estimate,
    list_gpus,
    load_gpu,
    with_measurements,
)
from mlc.compiler.superopt.cost.roofline import DRAM_EFFICIENCY, MATMUL_EFFICIENCY
from mlc.compiler.superopt.mugraph import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    KernelOp,
    MuGraph,
    MuGraphError,
)

R = -1  # imap entry: replicate along this grid axis


@pytest.fixture(scope="module")
def h100():
    return load_gpu("h100")


def block_kernel(grid, forloop_range, inputs, ops, outputs, sources, result="O"):
    block = BlockGraph(grid, forloop_range, tuple(inputs), tuple(ops), tuple(outputs))
    return KernelOp("block", tuple(sources), (result,), block=block)


# ---- specs -----------------------------------------------------------------------------------

def test_bundled_specs_load_with_reference_numbers():
    names = list_gpus()
    assert names == sorted(["h100", "h200", "a100-80gb", "a100-40gb", "l40s", "l4", "a10g", "t4",
                            "v100"])
    gpus = {name: load_gpu(name) for name in names}
    for gpu in gpus.values():
        assert gpu.source and gpu.usd_per_hour > 0
        assert gpu.smem_per_block <= gpu.smem_per_sm
        assert gpu.fp32_flops < gpu.fp16_flops
    h100 = gpus["h100"]
    assert h100.dram_bandwidth == pytest.approx(3.35e12)
    assert h100.bf16_flops == pytest.approx(989e12) and h100.sm_count == 132
    assert h100.smem_per_block == 227 * 1024 and h100.usd_per_hour == 6.88
    assert gpus["h200"].dram_bandwidth == pytest.approx(4.8e12)
    assert gpus["a100-80gb"].fp16_flops == pytest.approx(312e12)
    assert gpus["a100-80gb"].sm_count == 108
    assert gpus["a100-40gb"].dram_bandwidth == pytest.approx(1.56e12)
    assert gpus["a100-40gb"].usd_per_hour == 2.74
    assert gpus["l4"].dram_bandwidth == pytest.approx(0.3e12)
    assert gpus["t4"].bf16_flops is None and gpus["v100"].bf16_flops is None
    assert load_gpu("H100").name == "h100" and load_gpu("a100").name == "a100-80gb"


def test_unknown_gpu_lists_known_ones():
    with pytest.raises(MlcError, match="known GPUs: a100-40gb, a100-80gb, a10g, h100"):
        load_gpu("b200")


def test_user_spec_file(tmp_path):
    doc = json.loads(json.dumps(load_gpu("l4").__dict__))
    doc.update(name="my-l4", dram_bandwidth=2.0e11)
    path = tmp_path / "my.json"
    path.write_text(json.dumps(doc))
    assert load_gpu(path).dram_bandwidth == 2.0e11
    del doc["sm_count"]
    path.write_text(json.dumps(doc))
    with pytest.raises(MlcError, match="lacks field.*sm_count"):
        load_gpu(str(path))


# ---- library kernels -------------------------------------------------------------------------

def test_big_matmul_is_compute_bound(h100):
    n = 8192
    graph = MuGraph("mm", {"A": (n, n), "B": (n, n)},
                    (KernelOp("MatMul", ("A", "B"), ("C",)),), ("C",))
    (row,) = estimate(graph, h100).kernels
    assert row.bound == "compute" and row.kind == "library"
    assert row.flops == 2 * n**3
    ideal_us = row.flops / h100.fp16_flops * 1e6
    assert row.est_time_us == pytest.approx(ideal_us / MATMUL_EFFICIENCY + LAUNCH_OVERHEAD_US)
    assert 1.0 < row.est_time_us / ideal_us < 1.3


def test_elementwise_is_memory_bound(h100):
    shape = (8192, 8192)
    graph = MuGraph("add", {"A": shape, "B": shape},
                    (KernelOp("Add", ("A", "B"), ("C",)),), ("C",))
    (row,) = estimate(graph, h100).kernels
    assert row.bound == "memory"
    assert row.dram_bytes == 3 * math.prod(shape) * 2  # two reads, one write, fp16
    ideal_us = row.dram_bytes / h100.dram_bandwidth * 1e6
    assert row.est_time_us == pytest.approx(ideal_us / DRAM_EFFICIENCY + LAUNCH_OVERHEAD_US)


def test_tiny_op_is_launch_bound(h100):
    graph = MuGraph("neg", {"A": (4, 4)}, (KernelOp("Neg", ("A",), ("B",)),), ("B",))
    (row,) = estimate(graph, h100).kernels
    assert row.bound == "launch"
    assert row.est_time_us == pytest.approx(LAUNCH_OVERHEAD_US, rel=1e-3)


# ---- block kernels ---------------------------------------------------------------------------

def test_replicated_input_is_reread_by_every_block(h100):
    """256 blocks that each read all of X move 256x the bytes of 256 blocks that split it."""
    shape = (256, 4096)

    def graph(imap):
        inputs = (BlockInput("x", 0, imap, 1),)
        ops = (BlockOp("accum_sum_ld", ("x",), "s"),)
        omap = (0, R, R) if imap[0] == 0 else (1, R, R)
        kernel = block_kernel((256, 1, 1), 64, inputs, ops, (BlockOutput("s", omap),),
                              ("X",))
        return MuGraph("g", {"X": shape}, (kernel,), ("O",))

    split = estimate(graph((0, R, R)), h100).kernels[0]
    replicated = estimate(graph((R, R, R)), h100).kernels[0]
    out_split, out_repl = 256 * 1 * 2, 256 * 256 * 2  # (256,1) vs (256,256) outputs
    x_bytes = math.prod(shape) * 2
    assert split.dram_bytes - out_split == x_bytes
    assert replicated.dram_bytes - out_repl == 256 * x_bytes


def test_wave_quantization_steps_at_sm_multiples(h100):
    sms = h100.sm_count

    def time(blocks):
        tile = (64, 4096)  # the same work per block, whatever the grid
        inputs = (BlockInput("x", 0, (0, R, R), 1),)
        ops = (BlockOp("exp", ("x",), "e"), BlockOp("accum_sum", ("e",), "y"))
        kernel = block_kernel((blocks, 1, 1), 16, inputs, ops, (BlockOutput("y", (0, R, R)),),
                              ("X",))
        graph = MuGraph("w", {"X": (tile[0] * blocks, tile[1])}, (kernel,), ("O",))
        return estimate(graph, h100).kernels[0].est_time_us - LAUNCH_OVERHEAD_US

    assert time(sms // 2) == pytest.approx(time(sms))
    assert time(sms + 1) == pytest.approx(2 * time(sms))
    assert time(2 * sms) == pytest.approx(time(sms + 1))
    assert time(2 * sms + 1) == pytest.approx(1.5 * time(2 * sms))


def test_shared_memory_overflow_is_rejected(h100):
    inputs = (BlockInput("x", 0, (R, R, R), R),)
    ops = (BlockOp("accum_sum", ("x",), "y"),)
    kernel = block_kernel((1, 1, 1), 1, inputs, ops, (BlockOutput("y", (R, R, R)),), ("X",))
    graph = MuGraph("big", {"X": (512, 512)}, (kernel,), ("O",))
    with pytest.raises(MuGraphError, match="shared memory"):
        estimate(graph, h100)


# ---- fusion ranks ahead of the unfused baseline ----------------------------------------------

RMSNORM_SHAPES = {"X": (2, 4096), "W": (4096, 6144)}


def fused_rmsnorm_matmul() -> MuGraph:
    """Mirage's RMSNorm µGraph: one kernel, division after the matmul."""
    inputs = (BlockInput("x", 0, (R, R, R), 1), BlockInput("w", 1, (1, R, R), 0))
    ops = (BlockOp("accum_rms_ld", ("x",), "r"), BlockOp("matmul", ("x", "w"), "xw"),
           BlockOp("accum_sum", ("xw",), "acc"), BlockOp("div", ("acc", "r"), "y"))
    kernel = block_kernel((256, 1, 1), 32, inputs, ops, (BlockOutput("y", (1, R, R)),),
                          ("X", "W"))
    return MuGraph("rmsnorm_fused", RMSNORM_SHAPES, (kernel,), ("O",))


def unfused_rmsnorm_matmul() -> MuGraph:
    ops = (KernelOp("Mul", ("X", "X"), ("sq",)), KernelOp("ReduceMean", ("sq",), ("ms",)),
           KernelOp("Sqrt", ("ms",), ("rms",)), KernelOp("Div", ("X", "rms"), ("xn",)),
           KernelOp("MatMul", ("xn", "W"), ("O",)))
    return MuGraph("rmsnorm_unfused", RMSNORM_SHAPES, ops, ("O",))


def test_fused_rmsnorm_matmul_beats_unfused(h100):
    fused = estimate(fused_rmsnorm_matmul(), h100)
    unfused = estimate(unfused_rmsnorm_matmul(), h100)
    assert len(fused.kernels) == 1 and len(unfused.kernels) == 5
    assert fused.kernels[0].bound == "memory"
    # X (16 KB) is re-read by all 256 blocks; W (48 MB) is read once.
    assert fused.dram_bytes == (256 * 2 * 4096 + 4096 * 6144 + 2 * 6144) * 2
    assert fused.flops > 2 * 2 * 4096 * 6144
    assert fused.est_time_us < unfused.est_time_us
    assert fused.source == unfused.source == "estimated"


def test_lowered_baseline_is_slower_than_fused(h100):
    lowering = pytest.importorskip("mlc.compiler.superopt.verify.lowering")
    from mlc.specs.workloads import get_workload

    baseline = lowering.lower_to_mugraph(get_workload("rmsnorm_matmul"))
    assert estimate(fused_rmsnorm_matmul(), h100).est_time_us < \
        estimate(baseline, h100).est_time_us


def test_measured_times_replace_the_estimate(h100):
    report = estimate(unfused_rmsnorm_matmul(), h100)
    measured = with_measurements(report, [1.0] * 5)
    assert measured.source == "measured" and measured.time_us == 5.0
    assert measured.est_time_us == report.est_time_us
    assert measured.to_json()["source"] == "measured"
