"""The reference lowering and probabilistic verification: workloads, fused µGraphs, and wrong
variants that must be rejected."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    FloatArith,
    KernelOp,
    MuGraph,
    MuGraphError,
    run_mugraph,
)
from mlc.compiler.superopt.verify import (
    DEFAULT_TRIALS,
    PER_TRIAL_BOUND,
    TARGET_FALSE_ACCEPT,
    lower_to_mugraph,
    trials_for,
    verify,
    verify_many,
)
from mlc.specs.workloads import get_workload, list_workloads

ATTENTION = ("gqa", "qknorm", "prism_attention", "prism_qk_norm_attention")
SMALL_SPECS = [f"{name}:small" for name in list_workloads()] + \
    [f"{name}:small,safe" for name in ATTENTION]


# ---- hand-written µGraphs -------------------------------------------------------------------

RMS_OPS = (BlockOp("accum_rms_ld", ("x",), "r"), BlockOp("matmul", ("x", "w"), "xw"),
           BlockOp("accum_sum", ("xw",), "acc"), BlockOp("div", ("acc", "r"), "y"))


def rmsnorm_matmul_fused(graph, grid_x, forloop_range, ops=RMS_OPS, omap=(1, -1, -1)):
    """Mirage's RMSNorm+MatMul kernel: (X @ W) / rms(X), W's columns split over grid x."""
    block = BlockGraph(grid=(grid_x, 1, 1), forloop_range=forloop_range,
                       inputs=(BlockInput("x", 0, (-1, -1, -1), 1),
                               BlockInput("w", 1, (1, -1, -1), 0)),
                       ops=ops, outputs=(BlockOutput("y", omap),))
    return _single_kernel(graph, block)


def rmsnorm_matmul_rows(graph, forloop_range, omap):
    """The same kernel with X's rows split over grid y too: grid (2, 2, 1)."""
    block = BlockGraph(grid=(2, 2, 1), forloop_range=forloop_range,
                       inputs=(BlockInput("x", 0, (-1, 0, -1), 1),
                               BlockInput("w", 1, (1, -1, -1), 0)),
                       ops=RMS_OPS, outputs=(BlockOutput("y", omap),))
    return _single_kernel(graph, block)


ONLINE_SOFTMAX = (
    BlockOp("matmul", ("q", "k"), "s"),
    BlockOp("accum_max_ld", ("s",), "m"),
    BlockOp("sub", ("s", "m"), "shifted"),
    BlockOp("exp", ("shifted",), "e"),
    BlockOp("accum_sum_ld_rescale", ("e", "m"), "l"),
    BlockOp("matmul", ("e", "v"), "ev"),
    BlockOp("accum_sum_rescale", ("ev", "m"), "acc"),
    BlockOp("div", ("acc", "l"), "o"),
)


def attention_online_softmax(graph, forloop_range, ops=ONLINE_SOFTMAX):
    """Flash-style attention: grid (batch, 2 query halves), the loop walks the kv dim."""
    batch = graph.inputs["Q"].shape[0]
    block = BlockGraph(grid=(batch, 2, 1), forloop_range=forloop_range,
                       inputs=(BlockInput("q", 0, (0, 1, -1)),
                               BlockInput("k", 1, (0, -1, -1), 2),
                               BlockInput("v", 2, (0, -1, -1), 1)),
                       ops=ops, outputs=(BlockOutput("o", (0, 1, -1)),))
    return _single_kernel(graph, block)


def _single_kernel(graph, block):
    inputs = {name: tuple(t.shape) for name, t in graph.inputs.items()}
    kernel = KernelOp("block", tuple(inputs), ("out",), block=block, name="fused")
    return MuGraph(f"{graph.name}.fused", inputs, (kernel,), ("out",))


def _replace(ops, index, op):
    return ops[:index] + (op,) + ops[index + 1:]


# ---- error bound ----------------------------------------------------------------------------

def test_default_trials_follow_from_the_bound():
    assert PER_TRIAL_BOUND < 0.01
    assert PER_TRIAL_BOUND ** DEFAULT_TRIALS <= TARGET_FALSE_ACCEPT
    assert PER_TRIAL_BOUND ** (DEFAULT_TRIALS - 1) > TARGET_FALSE_ACCEPT
    assert trials_for(1e-3) < DEFAULT_TRIALS < trials_for(1e-30)


# ---- lowering -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", SMALL_SPECS)
def test_lowering_matches_interpreter(spec):
    graph = get_workload(spec)
    rng = np.random.default_rng(0)
    inputs = {name: rng.standard_normal(t.shape) * 0.5 for name, t in graph.inputs.items()}
    expected = interpret(graph, inputs, float64=True)
    got = run_mugraph(lower_to_mugraph(graph), inputs, FloatArith(np.float64))
    assert list(got) == list(graph.outputs)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-12)


def test_lowering_is_one_kernel_per_op():
    graph = get_workload("rmsnorm_matmul:small")
    lowered = lower_to_mugraph(graph)
    assert [op.op for op in lowered.ops] == [node.op for node in graph.nodes]
    assert lowered.ops[1].attrs == {"dim": 1}


def _graph(build):
    g = GraphBuilder("t")
    return g.build(build(g, g.input("x", (4, 8))))


def test_lowering_softmax_and_rejections():
    graph = _graph(lambda g, x: g.op("Softmax", x, axis=0, name="sm"))
    lowered = lower_to_mugraph(graph)
    assert [op.op for op in lowered.ops] == ["ReduceMax", "Sub", "Exp", "ReduceSum", "Div"]
    x = np.random.default_rng(1).standard_normal((4, 8))
    got = run_mugraph(lowered, {"x": x}, FloatArith())[graph.outputs[0]]
    np.testing.assert_allclose(got, interpret(graph, {"x": x}, float64=True)[graph.outputs[0]])
    assert verify(lowered, graph).equivalent
    cases = [(lambda g, x: g.op("Abs", x, name="t0"), r"'t0' \(Abs\): no µGraph lowering"),
             (lambda g, x: g.op("ReduceSum", x, axes=(1,), keepdims=0, name="r0"), "keep dims"),
             (lambda g, x: g.op("ReduceMean", x, axes=(0, 1), name="r1"), "one axis")]
    for build, message in cases:
        with pytest.raises(MuGraphError, match=message):
            lower_to_mugraph(_graph(build))


# ---- verification: accepts ------------------------------------------------------------------

@pytest.mark.parametrize("spec", SMALL_SPECS)
def test_lowered_workload_verifies_against_itself(spec):
    graph = get_workload(spec)
    verdict = verify(lower_to_mugraph(graph), graph)
    assert verdict.equivalent, verdict
    assert verdict.trials == DEFAULT_TRIALS and verdict.stage == "float"


def test_fused_rmsnorm_matmul_small():
    graph = get_workload("rmsnorm_matmul:small")  # X (2, 32), W (32, 48)
    for grid_x, forloop_range in ((1, 1), (4, 4), (6, 8)):
        verdict = verify(rmsnorm_matmul_fused(graph, grid_x, forloop_range), graph)
        assert verdict.equivalent, (grid_x, forloop_range, verdict)
    assert verify(rmsnorm_matmul_rows(graph, 4, (1, 0, -1)), graph).equivalent


@pytest.mark.slow
def test_fused_rmsnorm_matmul_full_size():
    """Correctness at the paper's shapes; the time per trial set is bench/mugraph_verify.py's."""
    graph = get_workload("rmsnorm_matmul")  # X (2, 4096), W (4096, 6144)
    assert graph.inputs["W"].shape == (4096, 6144)
    verdict = verify(rmsnorm_matmul_fused(graph, 96, 32), graph, seed=0)
    assert verdict.equivalent, verdict


@pytest.mark.parametrize("spec", ["gqa:small,safe", "gqa:small", "prism_attention:small",
                                  "gqa:small,b=2,kv=64"])
def test_online_softmax_attention(spec):
    graph = get_workload(spec)
    for forloop_range in (1, 4):
        verdict = verify(attention_online_softmax(graph, forloop_range), graph)
        assert verdict.equivalent, (spec, forloop_range, verdict)


# ---- verification: rejects ------------------------------------------------------------------

def test_rejects_normalizing_a_partial_tile():
    graph = get_workload("rmsnorm_matmul:small")
    ops = (BlockOp("rms_norm", ("x",), "xn"), BlockOp("matmul", ("xn", "w"), "xw"),
           BlockOp("accum_sum", ("xw",), "y"))
    verdict = verify(rmsnorm_matmul_fused(graph, 4, 4, ops), graph)
    assert not verdict.equivalent and verdict.stage == "field" and verdict.trials == 1
    assert verdict.output == graph.outputs[0] and verdict.max_error > 0.9
    # one loop iteration: the tile holds whole rows, so the same ops are right
    assert verify(rmsnorm_matmul_fused(graph, 4, 1, ops), graph).equivalent


def test_rejects_wrong_accumulator():
    graph = get_workload("rmsnorm_matmul:small")
    ops = _replace(RMS_OPS, 2, BlockOp("accum_sum_ld", ("xw",), "acc"))
    verdict = verify(rmsnorm_matmul_fused(graph, 4, 4, ops), graph)
    assert not verdict.equivalent and verdict.stage == "field" and verdict.max_error == 1.0


def test_rejects_wrong_omap():
    graph = get_workload("rmsnorm_matmul:small")
    # (2, 2, 1) grid: (0, 1, -1) has the right output shape but swaps the blocks
    verdict = verify(rmsnorm_matmul_rows(graph, 4, (0, 1, -1)), graph)
    assert not verdict.equivalent and verdict.stage == "field"
    verdict = verify(rmsnorm_matmul_fused(graph, 4, 4, omap=(0, -1, -1)), graph)
    assert not verdict.equivalent and verdict.max_error == 1.0  # (8, 12), not (2, 48)


def test_rejects_missing_normalization_and_wrong_div():
    graph = get_workload("rmsnorm_matmul:small")
    no_norm = (BlockOp("matmul", ("x", "w"), "xw"), BlockOp("accum_sum", ("xw",), "y"))
    times = _replace(RMS_OPS, 3, BlockOp("mul", ("acc", "r"), "y"))
    for ops in (no_norm, times):
        verdict = verify(rmsnorm_matmul_fused(graph, 4, 4, ops), graph)
        assert not verdict.equivalent and verdict.stage == "field"


def test_field_blind_max_misuse_is_caught_by_float_stage():
    # Without the rescale the denominator sums exp(s - m_i) with stale maxes: the field's
    # max := 0 cannot see it, the float check does.
    graph = get_workload("gqa:small,safe")
    ops = _replace(ONLINE_SOFTMAX, 4, BlockOp("accum_sum_ld", ("e",), "l"))
    verdict = verify(attention_online_softmax(graph, 4, ops), graph)
    assert not verdict.equivalent and verdict.stage == "float"
    assert verdict.trials == DEFAULT_TRIALS and verdict.max_error > 1e-4


def test_rejects_wrong_attention():
    graph = get_workload("gqa:small,safe")
    no_div = _replace(ONLINE_SOFTMAX, 7, BlockOp("mul", ("acc", "l"), "o"))
    verdict = verify(attention_online_softmax(graph, 4, no_div), graph)
    assert not verdict.equivalent and verdict.stage == "field"


def test_verify_many_and_pairing():
    graph = get_workload("rmsnorm_matmul:small")
    wrong = _replace(RMS_OPS, 3, BlockOp("mul", ("acc", "r"), "y"))
    verdicts = verify_many([rmsnorm_matmul_fused(graph, 4, 4),
                            rmsnorm_matmul_fused(graph, 4, 4, wrong),
                            lower_to_mugraph(graph)], graph, trials=2, seed=3)
    assert [v.equivalent for v in verdicts] == [True, False, True]
    assert verdicts[0].trials == 2 and verdicts[1].trials == 1
    assert all(v.seconds > 0 for v in verdicts)
    other = get_workload("rmsnorm_matmul:small,d=64")
    with pytest.raises(MuGraphError, match="pair up"):
        verify(lower_to_mugraph(other), graph)
