"""fuse_layer_norm (through the whole OPTIMIZE_PASSES list, which normalizes Pow and
reciprocals first): decomposed layer norms become LayerNormalization."""

from __future__ import annotations

import numpy as np
import pytest
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.passes.layer_norm import fuse_layer_norm
from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes

WIDTH = 6


def _decomposed(b, x, *, pow_square=True, reciprocal=False, axis=-1, affine=2):
    """The decomposed layer norm over the last axis, spelled in the variants exporters use."""
    mean = b.op("ReduceMean", x, axes=(axis,))
    d = b.op("Sub", x, mean)
    square = b.op("Pow", d, b.const(2.0)) if pow_square else b.op("Mul", d, d)
    std = b.op("Sqrt", b.op("Add", b.const(1e-5), b.op("ReduceMean", square, axes=(axis,))))
    y = b.op("Mul", d, b.op("Reciprocal", std)) if reciprocal else b.op("Div", d, std)
    rng = np.random.default_rng(3)
    if affine >= 1:
        y = b.op("Mul", b.weight("gamma", rng.standard_normal(WIDTH).astype(np.float32)), y)
    if affine >= 2:
        y = b.op("Add", y, b.weight("beta", rng.standard_normal((1, WIDTH)).astype(np.float32)))
    return y


@pytest.mark.parametrize("pow_square, reciprocal, axis, affine",
                         [(True, False, -1, 2), (False, True, 2, 1), (True, True, -1, 0)])
def test_decomposed_layer_norm_becomes_one_op(pow_square, reciprocal, axis, affine):
    b = GraphBuilder("ln")
    x = b.input("x", (2, 3, WIDTH))
    y = _decomposed(b, x, pow_square=pow_square, reciprocal=reciprocal, axis=axis,
                    affine=affine)
    graph = b.build(b.op("MatMul", y, b.input("w", (WIDTH, 4))))
    out = run_passes(graph, OPTIMIZE_PASSES)
    assert [n.op for n in out.nodes] == ["LayerNormalization", "MatMul"]
    assert out.nodes[0].attrs == {"axis": -1, "epsilon": pytest.approx(1e-5)}
    assert len(out.nodes[0].inputs) == (3 if affine == 2 else 2)
    assert_same_function(graph, out)


def test_norm_over_another_axis_or_with_a_leaking_value_is_left_alone():
    b = GraphBuilder("axis0")
    x = b.input("x", (WIDTH, 3))
    graph = b.build(_decomposed(b, x, pow_square=False, axis=0, affine=0))
    assert fuse_layer_norm(graph) is graph
    b = GraphBuilder("leak")
    x = b.input("x", (3, WIDTH))
    mean = b.op("ReduceMean", x, axes=(-1,))
    d = b.op("Sub", x, mean)
    std = b.op("Sqrt", b.op("Add", b.op("ReduceMean", b.op("Mul", d, d), axes=(-1,)),
                            b.const(1e-5)))
    graph = b.build(b.op("Div", d, std), mean)  # the mean is also a graph output
    assert fuse_layer_norm(graph) is graph
