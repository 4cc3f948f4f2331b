"""torch.export spellings: Transpose of a constant weight, Where(mask, scores, -inf)."""

from __future__ import annotations

import numpy as np
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.passes.masks import additive_masks
from mlc.compiler.passes.norm_affine import fold_constant_transposes


def test_transposed_constant_weights_fold():
    g = GraphBuilder("linear")
    x = g.input("x", (4, 8))
    w = g.weight("w", np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32))
    graph = g.build(g.op("MatMul", x, g.op("Transpose", w, perm=(1, 0)), name="y"))
    folded = fold_constant_transposes(graph)
    assert_same_function(graph, folded)
    assert [n.op for n in folded.nodes] == ["MatMul"]
    assert folded.weights[folded.nodes[0].inputs[1]].shape == (8, 6)


def _masked(fill):
    g = GraphBuilder("masked")
    scores, keep = g.input("s", (1, 2, 4, 4)), g.input("keep", (1, 1, 4, 4), "bool")
    masked = g.op("Where", keep, scores, g.const(np.float32(fill)))
    return g.build(g.op("Softmax", masked, axis=-1, name="p"))


def test_minus_infinity_masks_become_additive():
    graph = _masked(-np.inf)
    rewritten = additive_masks(graph)
    assert [n.op for n in rewritten.nodes] == ["Where", "Add", "Softmax"]
    feeds = {"s": np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32),
             "keep": np.tril(np.ones((4, 4), bool))[None, None]}
    from mlc.compiler.ir import interpret
    want = interpret(graph, feeds, float64=True)["p"]
    got = interpret(rewritten, feeds, float64=True)["p"]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_finite_fills_are_left_alone():
    graph = _masked(-1e9)  # s + Where(m, 0, -1e9) would differ on fully masked rows
    assert additive_masks(graph) is graph
