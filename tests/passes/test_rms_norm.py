"""fuse_rms_norm: Llama's spelled-out RMSNorm becomes one RMSNormalization; the µGraph level
lowers it, folds its weight into the matmuls it feeds, and the search fuses it as a prologue."""

from __future__ import annotations

import numpy as np
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.passes.layer_norm import fuse_rms_norm
from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes
from mlc.compiler.superopt.mugraph import FloatArith, run_mugraph
from mlc.compiler.superopt.regions import select_regions
from mlc.compiler.superopt.verify import lower_to_mugraph, verify


def _llama_norm(weight=True, consumers=1):
    rng = np.random.default_rng(0)
    g = GraphBuilder("rms")
    x = g.input("x", (2, 4, 32))
    mean = g.op("ReduceMean", g.op("Pow", x, g.const(np.float32(2.0))), axes=(-1,), keepdims=1)
    inv = g.op("Reciprocal", g.op("Sqrt", g.op("Add", mean, g.const(np.float32(1e-6)))))
    y = g.op("Mul", x, inv)
    if weight:
        y = g.op("Mul", g.weight("w", rng.uniform(0.5, 1.5, 32).astype(np.float32)), y)
    outs = [g.op("MatMul", y, g.weight(f"W{k}", rng.standard_normal((32, 16))
                                       .astype(np.float32)), name=f"out{k}")
            for k in range(consumers)]
    return g.build(*outs)


def test_spelled_rms_norm_becomes_one_node():
    graph = _llama_norm()
    canonical = run_passes(graph, OPTIMIZE_PASSES[:OPTIMIZE_PASSES.index(fuse_rms_norm) + 1])
    assert [n.op for n in canonical.nodes] == ["RMSNormalization", "MatMul"]
    assert canonical.nodes[0].attrs["epsilon"] == np.float32(1e-6)
    assert_same_function(graph, canonical)


def test_weight_folds_and_each_matmul_gets_its_own_norm():
    graph = _llama_norm(consumers=3)
    canonical = run_passes(graph, OPTIMIZE_PASSES)
    assert_same_function(graph, canonical)
    regions, _ = select_regions(canonical)
    ops = {n.name: n.op for n in canonical.nodes}
    assert [[ops[n] for n in r.nodes] for r in regions] == [["RMSNormalization", "MatMul"]] * 3
    assert all(len(r.inputs) == 2 for r in regions)  # x and the folded weight


def test_rms_norm_lowering_and_verification():
    graph = run_passes(_llama_norm(), OPTIMIZE_PASSES)
    (region,), _ = select_regions(graph)
    lowered = lower_to_mugraph(region.reference)
    feeds = {name: np.random.default_rng(1).standard_normal(t.shape)
             for name, t in region.reference.inputs.items()}
    got = run_mugraph(lowered, feeds, FloatArith())[region.outputs[0]]
    want = interpret(region.reference, feeds, float64=True)[region.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert verify(lowered, region.reference).equivalent
    from mlc.compiler.superopt.search.driver import search
    found = search(region.reference, budget_s=10, cache_dir=None, workers=1)
    best = [c for c in found.candidates if c.verified]
    assert best and "rms_norm" in {op.op for op in best[0].graph.ops[0].block.ops}


def test_an_unweighted_norm_fuses_with_a_unit_weight():
    graph = _llama_norm(weight=False)
    canonical = fuse_rms_norm(run_passes(graph, OPTIMIZE_PASSES[:OPTIMIZE_PASSES.index(
        fuse_rms_norm)]))
    assert canonical.nodes[0].op == "RMSNormalization"
    assert_same_function(graph, canonical)
