"""fold_norm_affine and merge_constant_adds: LayerNorm's gamma / beta folded into the matmul
weights that read it, and the two bias vectors that then meet added once."""

from __future__ import annotations

import numpy as np
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.passes.norm_affine import fold_norm_affine, merge_constant_adds
from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes


def _block(extra_reader=False, width=32, out=48):
    rng = np.random.default_rng(0)
    g = GraphBuilder("ln_block")
    x = g.input("x", (4, width))
    gamma = g.weight("gamma", rng.uniform(0.5, 1.5, width).astype(np.float32))
    beta = g.weight("beta", rng.standard_normal(width).astype(np.float32))
    w = g.weight("w", rng.standard_normal((width, out)).astype(np.float32))
    bias = g.weight("bias", rng.standard_normal(out).astype(np.float32))
    normed = g.op("LayerNormalization", x, gamma, beta, epsilon=1e-5)
    y = g.op("Gelu", g.op("Add", g.op("MatMul", normed, w), bias), name="y")
    if extra_reader:
        return g.build(y, g.op("Relu", normed, name="side"))
    return g.build(y)


def test_gamma_and_beta_fold_into_the_matmul_and_biases_merge():
    graph = _block()
    folded = merge_constant_adds(fold_norm_affine(graph))
    assert_same_function(graph, folded)
    assert [n.op for n in folded.nodes] == ["LayerNormalization", "MatMul", "Add", "Gelu"]
    norm = folded.nodes[0]
    assert np.all(folded.weights[norm.inputs[1]] == 1) and not folded.weights[norm.inputs[2]].any()
    assert set(folded.weights) & {"gamma", "beta", "w", "bias"} == set()


def test_the_optimize_pipeline_leaves_three_kernel_inputs():
    from mlc.compiler.superopt.regions import select_regions
    graph = run_passes(_block(), OPTIMIZE_PASSES)
    (region,), _ = select_regions(graph)
    assert len(region.inputs) == 3  # x, the folded weight, the merged bias


def test_other_readers_keep_the_affine_value():
    graph = _block(extra_reader=True)
    folded = fold_norm_affine(graph)
    assert_same_function(graph, folded)
    norms = [n for n in folded.nodes if n.op == "LayerNormalization"]
    assert len(norms) == 2  # the original for the other reader, an identity one for the matmul
    readers = [{n.op for n in folded.nodes if norm.outputs[0] in n.inputs} for norm in norms]
    assert readers == [{"Relu"}, {"MatMul"}]


def test_a_norm_no_matmul_reads_is_left_alone():
    g = GraphBuilder("side")
    x = g.input("x", (4, 8))
    normed = g.op("LayerNormalization", x, g.weight("g", np.full(8, 2, np.float32)))
    graph = g.build(g.op("Relu", normed, name="y"))
    assert fold_norm_affine(graph) is graph


def test_an_identity_affine_norm_is_left_alone():
    g = GraphBuilder("plain")
    x = g.input("x", (4, 8))
    w = g.weight("w", np.ones((8, 8), np.float32))
    normed = g.op("LayerNormalization", x, g.weight("one", np.ones(8, np.float32)),
                  g.weight("zero", np.zeros(8, np.float32)))
    graph = g.build(g.op("MatMul", normed, w, name="y"))
    assert fold_norm_affine(graph) is graph
